//! Reconciliation: the province's dossiers of a period against what the
//! national portal holds, asked dossier by dossier, with the differences and
//! the progress counters of the national service index (Decision
//! 766/QĐ-TTg) counted from what lgsp holds.

use super::{store, PortalSync};
use crate::db::schema::{sync_dossiers, sync_events};
use crate::db::{now_micros, DbError};
use crate::error::{ApiError, ErrorCode};
use diesel::prelude::*;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;

/// One dossier on which the province and the portal disagree, and why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Difference {
    pub code: String,
    pub procedure: String,
    /// The national channel code (1 in person, 2 online, 3 post).
    pub channel: i64,
    /// The national status lgsp holds.
    pub status: i64,
    /// `never_sent`, `refused`, `steps_missing` or `status_behind`.
    pub why: String,
    pub detail: String,
}

/// Dossiers of one procedure, channel and status.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Tally {
    /// Those lgsp holds.
    pub held: usize,
    /// Those the portal holds alike.
    pub matching: usize,
}

/// Dossiers received in the period, by channel.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Received {
    pub online: usize,
    pub in_person: usize,
    pub post: usize,
}

/// Dossiers processed (national status 9 or 10), by when against their
/// appointment: early (a day before it or sooner), on time (by it), late.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Processed {
    pub early: usize,
    pub on_time: usize,
    pub late: usize,
}

/// Dossiers still being processed (national status 1, 2, 4, 5 or 6), by
/// whether their appointment has passed (`as_of`).
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct InProgress {
    pub within_deadline: usize,
    pub past_deadline: usize,
}

/// The progress counters of the national service index (Decision
/// 766/QĐ-TTg) over the period's dossiers, counted from what lgsp holds:
/// what the portal's figures should show.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Counters {
    /// The instant in-progress dossiers are judged at (RFC 3339).
    pub as_of: String,
    pub received: Received,
    pub processed: Processed,
    pub in_progress: InProgress,
    /// Dossiers returned for supplement at least once (national status 5).
    pub supplement_requested: usize,
    /// Dossiers whose documents were all digitised (at least one document).
    pub digitised: usize,
    /// `digitised` as a share of the period's dossiers, in per cent (one decimal).
    pub digitised_percent: f64,
    /// Dossiers with at least one document reused from a record the province held.
    pub reused: usize,
    /// `reused` as a share of the period's dossiers, in per cent (one decimal).
    pub reused_percent: f64,
}

/// One row of the tally: a procedure, a national channel and status code.
pub struct TallyRow<'a> {
    pub procedure: &'a str,
    pub channel: i64,
    pub status: i64,
    pub tally: &'a Tally,
}

impl Reconciliation {
    /// The tally as rows, its `procedure/channel/status` keys taken apart.
    pub fn rows(&self) -> impl Iterator<Item = TallyRow<'_>> {
        self.tally.iter().map(|(key, tally)| {
            let mut parts = key.splitn(3, '/');
            let procedure = parts.next().unwrap_or("");
            let mut code = || parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
            let (channel, status) = (code(), code());
            TallyRow { procedure, channel, status, tally }
        })
    }
}

/// The province's dossiers received in a period, against what the portal holds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Reconciliation {
    pub from: String,
    pub to: String,
    pub dossiers: usize,
    pub matching: usize,
    /// Per `procedure/channel/status`: the dossiers lgsp holds, and how many the portal holds alike.
    pub tally: std::collections::BTreeMap<String, Tally>,
    pub differences: Vec<Difference>,
    pub counters: Counters,
}

/// A dossier as lgsp holds it: its national record and its changes' national
/// statuses with their instants (`yyyyMMddHHmmss`), in order.
pub struct Held {
    pub code: String,
    pub record: Value,
    pub changes: Vec<(i64, String)>,
}

fn percent(n: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        (n as f64 * 1000.0 / of as f64).round() / 10.0
    }
}

impl Counters {
    /// Counts `dossiers` as Decision 766 does, as of the instant `as_of` (RFC 3339).
    pub fn count(dossiers: &[Held], as_of: String) -> Counters {
        let now = super::portal_time(&as_of, "").unwrap_or_default();
        let now = now.as_str();
        let mut c = Counters { as_of, ..Default::default() };
        for d in dossiers {
            let r = &d.record;
            match r["KenhThucHien"].as_i64() {
                Some(1) => c.received.in_person += 1,
                Some(3) => c.received.post += 1,
                _ => c.received.online += 1,
            }
            let due = r["NgayHenTra"].as_str();
            let status = r["TrangThaiHoSo"].as_i64().unwrap_or(0);
            match status {
                9 | 10 => {
                    // Finished when it first reached 9 or 10; a dossier
                    // reported finished outright, when it was received.
                    let finished = d
                        .changes
                        .iter()
                        .find(|(s, _)| matches!(s, 9 | 10))
                        .map(|(_, at)| at.as_str())
                        .unwrap_or(r["NgayTiepNhan"].as_str().unwrap_or(""));
                    match due {
                        Some(due) if finished > due => c.processed.late += 1,
                        Some(due) if finished.get(..8) < due.get(..8) => c.processed.early += 1,
                        _ => c.processed.on_time += 1,
                    }
                }
                1 | 2 | 4 | 5 | 6 => match due {
                    Some(due) if due < now => c.in_progress.past_deadline += 1,
                    _ => c.in_progress.within_deadline += 1,
                },
                _ => {}
            }
            if status == 5 || d.changes.iter().any(|(s, _)| *s == 5) {
                c.supplement_requested += 1;
            }
            let documents = r["DanhSachGiayTo"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            if !documents.is_empty() && documents.iter().all(|x| x["SoHoa"] == true) {
                c.digitised += 1;
            }
            if documents.iter().any(|x| x["TaiSuDung"] == true) {
                c.reused += 1;
            }
        }
        c.digitised_percent = percent(c.digitised, dossiers.len());
        c.reused_percent = percent(c.reused, dossiers.len());
        c
    }
}

impl PortalSync {
    async fn lookup(&self, code: &str) -> Result<Option<Value>, String> {
        let url = format!(
            "{}/dvcqg/api/tra-cuu-ho-so?MaHoSo={}",
            self.settings.url.trim_end_matches('/'),
            urlencoding::encode(code)
        );
        let r = self.call(|| self.http.get(&url)).await?;
        match r.status().as_u16() {
            404 => Ok(None),
            200 => r.json().await.map(Some).map_err(|e| e.without_url().to_string()),
            s => Err(format!("the portal answered {s}")),
        }
    }

    /// The dossiers received from `from` to `to` (both included), as lgsp holds them.
    pub async fn held(&self, from: jiff::civil::Date, to: jiff::civil::Date) -> Result<Vec<Held>, DbError> {
        let day = |d: jiff::civil::Date| format!("{:04}{:02}{:02}", d.year(), d.month(), d.day());
        let (lo, hi) = (day(from), day(to));
        self.db
            .run(move |c| {
                let rows: Vec<(String, String)> = sync_dossiers::table
                    .filter(sync_dossiers::received_on.between(&lo, &hi))
                    .select((sync_dossiers::code, sync_dossiers::record))
                    .order(sync_dossiers::code)
                    .load(c)?;
                // Every change of the period's dossiers, in one query.
                let events: Vec<(String, String)> = sync_events::table
                    .filter(
                        sync_events::dossier_code.eq_any(
                            sync_dossiers::table
                                .filter(sync_dossiers::received_on.between(&lo, &hi))
                                .select(sync_dossiers::code),
                        ),
                    )
                    .order((sync_events::dossier_code, sync_events::seq))
                    .select((sync_events::dossier_code, sync_events::event))
                    .load(c)?;
                let mut changes: std::collections::HashMap<String, Vec<(i64, String)>> = Default::default();
                for (code, event) in events {
                    if let Ok(e) = serde_json::from_str::<super::EventReport>(&event) {
                        let status = super::national_codes().statuses.get(&e.status).copied().unwrap_or(0);
                        changes
                            .entry(code)
                            .or_default()
                            .push((status, super::portal_time(&e.at, "").unwrap_or_default()));
                    }
                }
                Ok(rows
                    .into_iter()
                    .map(|(code, record)| Held {
                        changes: changes.remove(&code).unwrap_or_default(),
                        record: serde_json::from_str(&record).unwrap_or(Value::Null),
                        code,
                    })
                    .collect())
            })
            .await
    }

    /// Compares the dossiers received from `from` to `to` (`yyyy-mm-dd`,
    /// both included) with what the portal holds, asking it for each, and
    /// counts them as Decision 766 does.
    pub async fn reconcile(&self, from: jiff::civil::Date, to: jiff::civil::Date) -> Result<Reconciliation, ApiError> {
        if self.settings.url.is_empty() {
            return Err(ApiError::new(ErrorCode::NotReady, "No national portal is configured (portal.url)."));
        }
        let held = self.held(from, to).await?;
        let now = jiff::Timestamp::now().round(jiff::Unit::Second).map_err(ApiError::internal)?.to_string();
        let counters = Counters::count(&held, now);
        let mut out = Reconciliation {
            from: from.to_string(),
            to: to.to_string(),
            dossiers: held.len(),
            matching: 0,
            tally: Default::default(),
            differences: Vec::new(),
            counters,
        };
        // The portal is asked for a few dossiers at once, the answers kept in order.
        let mut asked = futures_util::stream::iter(held)
            .map(|h| async move {
                let portal = self.lookup(&h.code).await;
                (h, portal)
            })
            .buffered(8);
        while let Some((Held { code, record, changes }, portal)) = asked.next().await {
            let procedure = record["MaTTHC"].as_str().unwrap_or("").to_string();
            let (channel, status) =
                (record["KenhThucHien"].as_i64().unwrap_or(0), record["TrangThaiHoSo"].as_i64().unwrap_or(0));
            let key = format!("{procedure}/{channel}/{status}");
            let portal = portal.map_err(|why| {
                ApiError::new(ErrorCode::UpstreamUnavailable, format!("The portal could not be asked: {why}"))
            })?;
            let events = changes.len();
            let difference = match portal {
                None => {
                    let refused = self.outbox(&code).await?.into_iter().find(|r| r.state == "refused");
                    match refused {
                        Some(r) => Some(("refused", r.last_error.unwrap_or_default())),
                        None => Some(("never_sent", "the portal holds no such dossier".to_string())),
                    }
                }
                Some(h) => {
                    let steps = h["QuaTrinhXuLy"].as_array().map_or(0, Vec::len);
                    if steps < events {
                        Some(("steps_missing", format!("the portal holds {steps} of {events} steps")))
                    } else if h["HoSo"]["TrangThaiHoSo"].as_i64() != Some(status) {
                        Some((
                            "status_behind",
                            format!("the portal holds status {}, lgsp {status}", h["HoSo"]["TrangThaiHoSo"]),
                        ))
                    } else {
                        None
                    }
                }
            };
            let entry = out.tally.entry(key).or_default();
            entry.held += 1;
            match difference {
                None => {
                    entry.matching += 1;
                    out.matching += 1;
                }
                Some((why, detail)) => {
                    out.differences.push(Difference { code, procedure, channel, status, why: why.into(), detail })
                }
            }
        }
        Ok(out)
    }

    /// Sends again, whole, each dossier that differs (its record, then every
    /// step in order): what the portal lacks is filled, what it holds is
    /// replaced by the same. Returns the dossiers queued.
    pub async fn resend(&self, differences: &[Difference]) -> Result<Vec<String>, DbError> {
        let codes: Vec<String> = differences.iter().filter(|d| d.why != "refused").map(|d| d.code.clone()).collect();
        let queued = codes.clone();
        self.db
            .run(move |c| {
                crate::db::write_transaction(c, |c| {
                    let now = now_micros();
                    for code in &codes {
                        store::queue_whole(c, code, now)?;
                    }
                    Ok(())
                })
            })
            .await?;
        self.wake.notify_one();
        Ok(queued)
    }
}

/// A synced dossier as lgsp holds it, what was sent of it, and the portal's copy.
#[derive(Debug, Serialize)]
pub struct SyncView {
    pub code: String,
    /// The national record lgsp holds.
    pub record: Value,
    /// The changes reported, in order.
    pub changes: Vec<Value>,
    /// The messages queued for the portal, oldest first.
    pub outbox: Vec<super::OutboxRow>,
    /// The portal's copy (`None` when it holds none).
    pub portal: Option<Value>,
    /// Why the portal could not be asked, if it could not.
    pub portal_error: Option<String>,
}

impl PortalSync {
    /// One dossier of the sync, side by side with the portal's copy.
    pub async fn view(&self, code: &str) -> Result<SyncView, ApiError> {
        let code2 = code.to_string();
        let held: Option<(String, Vec<String>)> = self
            .db
            .run(move |c| {
                let record: Option<String> =
                    sync_dossiers::table.find(&code2).select(sync_dossiers::record).first(c).optional()?;
                let Some(record) = record else { return Ok(None) };
                let events = sync_events::table
                    .filter(sync_events::dossier_code.eq(&code2))
                    .order(sync_events::seq)
                    .select(sync_events::event)
                    .load(c)?;
                Ok(Some((record, events)))
            })
            .await?;
        let Some((record, events)) = held else {
            return Err(ApiError::not_found(format!("lgsp holds no dossier \"{code}\" for the national portal.")));
        };
        let (portal, portal_error) = if self.settings.url.is_empty() {
            (None, Some("no national portal is configured (portal.url)".to_string()))
        } else {
            match self.lookup(code).await {
                Ok(p) => (p, None),
                Err(e) => (None, Some(e)),
            }
        };
        Ok(SyncView {
            code: code.to_string(),
            record: serde_json::from_str(&record).unwrap_or(Value::Null),
            changes: events.iter().filter_map(|e| serde_json::from_str(e).ok()).collect(),
            outbox: self.outbox(code).await?,
            portal,
            portal_error,
        })
    }
}
