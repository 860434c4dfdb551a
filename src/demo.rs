//! What `lgsp demo` and `lgsp report forms` share: the mock registries wired
//! to a gateway, a sample partner, and prefills over real HTTP for typical
//! citizens of the synthetic population.

use crate::audit::AuditRecord;
use crate::catalog::manage::{NewKey, PartnerInput};
use crate::config::{Secret, Settings, UpstreamSettings};
use crate::domain::partner::{PartnerKind, Policy};
use crate::error::ErrorCode;
use crate::registries::population::Samples;
use crate::registries::{MockRegistries, RegistryKind};
use crate::state::AppState;
use serde_json::{json, Value};

/// The sample partner: the provincial public-service portal.
pub const DEMO_PARTNER: &str = "000.00.15.H29";

/// Points the gateway's upstreams at running mock registries.
pub fn use_mocks(settings: &mut Settings, mocks: &MockRegistries, tokens: &[String; 3]) {
    for (i, kind) in RegistryKind::ALL.into_iter().enumerate() {
        settings.upstreams.insert(
            kind.name().to_string(),
            UpstreamSettings { url: mocks.url(kind), token: Secret::new(tokens[i].clone()) },
        );
    }
}

/// Registers the portal as a partner granted every form, operation and basic
/// element, and the sensitive element its forms ask for (if absent), and
/// makes it a fresh key; both changes are in the audit trail (action
/// `admin`, key `demo`), as a steward's would be.
pub async fn demo_partner(state: &AppState) -> anyhow::Result<NewKey> {
    let all = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    let input = PartnerInput {
        id: DEMO_PARTNER.into(),
        name: "Cổng dịch vụ công tỉnh (demo)".into(),
        kind: PartnerKind::StateAgency,
        policy: Policy {
            forms: all(&["*"]),
            purposes: all(&["*"]),
            operations: all(&["*"]),
            // The portal's birth registration and insurance enrolment forms
            // ask for ethnicity, sensitive data a wildcard does not grant.
            elements: all(&["*", "ethnicity"]),
            access_log: true,
            networks: Vec::new(),
        },
        rate_per_minute: 600_000,
        burst: 10_000,
        enabled: true,
    };
    let note = |resource: String, detail: Value| state.audit.record(AuditRecord::change("demo", resource, detail));
    match state.catalog.create_partner(input).await {
        Ok(()) => note("partners".into(), json!({"partner": DEMO_PARTNER, "by": "lgsp demo"})).await,
        Err(e) if e.code == ErrorCode::Conflict => {}
        Err(e) => anyhow::bail!("registering the demo partner failed: {}", e.detail),
    }
    let key = state.catalog.create_key(DEMO_PARTNER, "demo", None).await.map_err(|e| anyhow::anyhow!(e.detail))?;
    note(format!("partners/{DEMO_PARTNER}/keys"), json!({"made_key_id": key.id, "by": "lgsp demo"})).await;
    Ok(key)
}

/// The kinds of citizen a form is typically filled in for.
pub fn typical_subjects(form: &str, s: &Samples) -> Vec<String> {
    let pick = |v: &[String]| v.to_vec();
    match form {
        "birth_registration" => pick(&s.parent_of_newborn),
        "death_registration" => pick(&s.deceased),
        "marital_status_certificate" => [pick(&s.married), pick(&s.adult_with_household)].concat(),
        "tk1_ts" => [pick(&s.adult_with_household), pick(&s.child_under_6), pick(&s.legacy_address)].concat(),
        _ => [pick(&s.adult_with_household), pick(&s.legacy_address)].concat(),
    }
}

/// Who asks, for a form about a subject that another may fill in: for a
/// death, a living adult (the declarant, here one of the samples, the
/// `i`th); for anything else, the subject.
pub fn typical_requester(form: &str, subject: &str, i: usize, s: &Samples) -> String {
    match (form, s.adult_with_household.len()) {
        ("death_registration", n) if n > 0 => s.adult_with_household[i % n].clone(),
        _ => subject.to_string(),
    }
}

/// One prefill over HTTP, with the requester's ID where there is one.
pub async fn prefill(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    form: &str,
    purpose: &str,
    citizen_id: &str,
    requester_id: Option<&str>,
) -> anyhow::Result<Value> {
    let mut body = json!({"form": form, "citizen_id": citizen_id, "purpose": purpose});
    if let Some(r) = requester_id {
        body["requester_id"] = json!(r);
    }
    let resp = client.post(format!("{base}/v1/prefill")).bearer_auth(key).json(&body).send().await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    anyhow::ensure!(status.is_success(), "prefill of {form} answered {status}: {body}");
    Ok(body)
}

/// One row of `lgsp report forms`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FormReport {
    pub form: String,
    pub form_code: String,
    pub fields: usize,
    pub ceiling: f64,
    pub prefills: usize,
    pub measured: f64,
    pub characters_saved: f64,
}

impl FormReport {
    pub fn meets_target(&self) -> bool {
        self.prefills > 0 && self.measured >= 0.2
    }
}

/// Prefills every enabled form for its typical citizens and measures the cut.
pub async fn report(state: &AppState, base: &str, key: &str, samples: &Samples) -> anyhow::Result<Vec<FormReport>> {
    let client = reqwest::Client::new();
    let catalog = state.catalog.get();
    let mut out = Vec::new();
    for live in catalog.forms.values().filter(|f| f.enabled) {
        let form = &live.form;
        let (bound, total) = form.ceiling();
        let purpose = &form.doc.purposes[0];
        let (mut cuts, mut chars) = (Vec::new(), 0.0);
        let asks = form.persons.contains_key(crate::form::REQUESTER);
        for (i, id) in typical_subjects(form.id(), samples).into_iter().enumerate() {
            let requester = asks.then(|| typical_requester(form.id(), &id, i, samples));
            let answer = prefill(&client, base, key, form.id(), purpose, &id, requester.as_deref()).await?;
            cuts.push(answer["coverage"]["cut"].as_f64().unwrap_or(0.0));
            chars += answer["coverage"]["characters_saved"].as_f64().unwrap_or(0.0);
        }
        let n = cuts.len();
        out.push(FormReport {
            form: form.id().to_string(),
            form_code: form.doc.form_code.clone(),
            fields: total,
            ceiling: crate::prefill::ratio(bound, total),
            prefills: n,
            measured: if n == 0 { 0.0 } else { (cuts.iter().sum::<f64>() / n as f64 * 1000.0).round() / 1000.0 },
            characters_saved: if n == 0 { 0.0 } else { (chars / n as f64 * 10.0).round() / 10.0 },
        });
    }
    Ok(out)
}

pub fn print_report(rows: &[FormReport]) {
    println!(
        "{:<28} {:<22} {:>6} {:>8} {:>9} {:>9} {:>11}  target 20%",
        "form", "code", "fields", "ceiling", "prefills", "measured", "chars saved"
    );
    for r in rows {
        println!(
            "{:<28} {:<22} {:>6} {:>7.1}% {:>9} {:>8.1}% {:>11.1}  {}",
            r.form,
            r.form_code,
            r.fields,
            r.ceiling * 100.0,
            r.prefills,
            r.measured * 100.0,
            r.characters_saved,
            if r.meets_target() { "met" } else { "MISSED" }
        );
    }
}

/// A mother of a newborn to declare (a married woman of 22 to 39 in a
/// household) and a person whose death to declare, with a relative in their
/// household: the `lgsp demo` dossiers and the dossier benchmark's.
pub fn birth_filing(pop: &crate::registries::population::Population, nth: usize, given: &str) -> Option<Value> {
    use crate::registries::population::Marital;
    let mother = pop
        .people
        .iter()
        .filter(|p| {
            p.sex == crate::domain::Sex::Female
                && p.marital == Marital::Married
                && p.spouse.is_some()
                && (22..40).contains(&p.age())
                && p.is_alive()
        })
        .nth(nth)?;
    let head = pop.get(pop.household_of(mother).head);
    let mut declaration = json!({
        "child": {"surname": pop.get(mother.spouse?).name.surname(), "middle_name": "Minh", "given_name": given,
                  "date_of_birth": crate::domain::calendar::today_in_vietnam().to_string(), "sex": "female"},
        "mother_id": mother.id.to_string(),
        "household_head_id": head.id.to_string(),
        "relationship": "mẹ",
    });
    declaration["father_id"] = json!(pop.get(mother.spouse?).id.to_string());
    Some(
        json!({"flow": "birth_residence_insurance", "requester_id": mother.id.to_string(), "declaration": declaration}),
    )
}

pub fn death_filing(pop: &crate::registries::population::Population, nth: usize) -> Option<Value> {
    let p = pop
        .people
        .iter()
        .filter(|p| {
            p.is_alive()
                && p.age() >= 60
                && crate::registries::render::contributions(p).pension
                && pop.household_of(p).members.iter().any(|&m| pop.get(m).id != p.id && pop.get(m).age() >= 18)
        })
        .nth(nth)?;
    let relative = pop.household_of(p).members.iter().map(|&m| pop.get(m)).find(|m| m.id != p.id && m.age() >= 18)?;
    Some(json!({
        "flow": "death_residence_allowance",
        "requester_id": relative.id.to_string(),
        "declaration": {"deceased_id": p.id.to_string(),
                        "date_of_death": crate::domain::calendar::today_in_vietnam().to_string(),
                        "relationship": "con"},
    }))
}

/// Files `body` as a linked dossier and waits (up to `wait`) until it is
/// finished; the dossier as its partner reads it then.
pub async fn carry_dossier(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    body: &Value,
    wait: std::time::Duration,
) -> anyhow::Result<Value> {
    let filing = format!("demo-{}", crate::telemetry::new_uuid().simple());
    let resp = client
        .post(format!("{base}/v1/linked-dossiers"))
        .bearer_auth(key)
        .header("Idempotency-Key", filing)
        .json(body)
        .send()
        .await?;
    let status = resp.status();
    let filed: Value = resp.json().await?;
    anyhow::ensure!(status.is_success(), "filing answered {status}: {filed}");
    let code = filed["code"].as_str().unwrap_or_default().to_string();
    let until = std::time::Instant::now() + wait;
    loop {
        let d: Value =
            client.get(format!("{base}/v1/linked-dossiers/{code}")).bearer_auth(key).send().await?.json().await?;
        let open = matches!(d["state"].as_str(), Some("processing" | "supplement" | "withdrawing"));
        if !open || std::time::Instant::now() > until {
            return Ok(d);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// One line per step: its state and what it gave.
pub fn print_dossier(d: &Value) {
    println!(
        "  {} ({}) is {}",
        d["code"].as_str().unwrap_or(""),
        d["flow"].as_str().unwrap_or(""),
        d["state"].as_str().unwrap_or("")
    );
    for s in d["steps"].as_array().into_iter().flatten() {
        let result = &s["result"];
        let gave = result
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        let shown = v
                            .get("certificate_number")
                            .or_else(|| v.get("number"))
                            .or_else(|| v.get("decision_number"))
                            .or_else(|| v.get("registration_date"))
                            .or_else(|| v.get("removal_date"))
                            .unwrap_or(v);
                        format!("{k} {}", shown.as_str().map(str::to_string).unwrap_or_else(|| shown.to_string()))
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|| s["reason"].as_str().unwrap_or("").to_string());
        println!("    {:<24} {:<10} {gave}", s["id"].as_str().unwrap_or(""), s["state"].as_str().unwrap_or(""));
    }
}
