use crate::helpers::{fresh_database_url, postgres_server};
use diesel::migration::MigrationSource;
use diesel_migrations::MigrationHarness;
use lgsp::config::{DatabaseSettings, Secret};
use lgsp::db::{Backend, Db, DbError};

#[test]
fn migrations_apply_once_and_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path());
    let db = Db::new(&Secret::new(&url), &DatabaseSettings::default()).unwrap();
    let expected = if postgres_server().is_some() { Backend::Postgres } else { Backend::Sqlite };
    assert_eq!(db.backend, expected);
    let first = db.migrate().unwrap();
    let shipped = match db.backend {
        Backend::Sqlite => {
            MigrationSource::<diesel::sqlite::Sqlite>::migrations(&lgsp::db::SQLITE_MIGRATIONS).map(|m| m.len())
        }
        Backend::Postgres => {
            MigrationSource::<diesel::pg::Pg>::migrations(&lgsp::db::POSTGRES_MIGRATIONS).map(|m| m.len())
        }
    };
    assert_eq!(first.len(), shipped.unwrap(), "every shipped migration applied: {first:?}");
    assert!(db.migrate().unwrap().is_empty(), "second run applies nothing");
    let mut conn = db.conn().unwrap();
    Db::ping(&mut conn).unwrap();
    assert_eq!(lgsp::db::catalog_version(&mut conn).unwrap(), 1);
}

#[test]
fn sqlite_runs_in_wal_mode() {
    use diesel::{sql_types::Text, QueryableByName, RunQueryDsl};
    #[derive(QueryableByName)]
    struct Mode {
        #[diesel(sql_type = Text)]
        journal_mode: String,
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("w.db").display());
    let db = Db::new(&Secret::new(&url), &DatabaseSettings::default()).unwrap();
    db.migrate().unwrap();
    let mut conn = db.conn().unwrap();
    let lgsp::db::DbConnection::Sqlite(c) = &mut *conn else { panic!("sqlite") };
    let mode: Mode = diesel::sql_query("PRAGMA journal_mode").get_result(c).unwrap();
    assert_eq!(mode.journal_mode, "wal");
}

#[test]
fn sqlite_syncs_every_commit_when_asked() {
    use diesel::{sql_types::Integer, QueryableByName, RunQueryDsl};
    #[derive(QueryableByName)]
    struct Sync {
        #[diesel(sql_type = Integer)]
        synchronous: i32,
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    for (setting, level) in [(lgsp::config::SqliteSynchronous::Normal, 1), (lgsp::config::SqliteSynchronous::Full, 2)] {
        let settings = DatabaseSettings { sqlite_synchronous: setting, ..Default::default() };
        let db = Db::new(&Secret::new(&url), &settings).unwrap();
        let mut conn = db.conn().unwrap();
        let lgsp::db::DbConnection::Sqlite(c) = &mut *conn else { panic!("sqlite") };
        let sync: Sync = diesel::sql_query("PRAGMA synchronous").get_result(c).unwrap();
        assert_eq!(sync.synchronous, level, "{setting:?}");
    }
    // From the configuration file's words.
    let parsed: DatabaseSettings = serde_json::from_value(serde_json::json!({"sqlite_synchronous": "full"})).unwrap();
    assert_eq!(parsed.sqlite_synchronous, lgsp::config::SqliteSynchronous::Full);
}

/// A SQLite trail written under the first schema (seq a separate primary-key
/// index) is carried over by the migration that makes seq the rowid: every
/// record kept, the chain still verifies, and new records extend it.
#[test]
fn a_sqlite_audit_trail_survives_the_rowid_migration() {
    use diesel::{sql_types::Text, QueryableByName, RunQueryDsl};
    #[derive(QueryableByName)]
    struct Index {
        #[diesel(sql_type = Text)]
        name: String,
    }
    let record = |n: i64| lgsp::audit::AuditRecord {
        record_id: format!("r{n}"),
        ts: 1_795_000_000_000_000 + n,
        request_id: format!("q{n}"),
        partner_id: "000.00.15.H29".into(),
        key_id: "k1".into(),
        action: lgsp::audit::Action::Exchange,
        subject: Some(format!("0010900012{n:02}")),
        purpose: Some("health_insurance_enrolment".into()),
        resource: "population.citizen".into(),
        adapters: vec!["population.citizen".into()],
        elements: vec!["full_name".into()],
        outcome: lgsp::audit::Outcome::Ok,
        status: 200,
        latency_us: 900,
        detail: serde_json::json!({}),
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let db = Db::new(&Secret::new(&url), &DatabaseSettings::default()).unwrap();
    let mut conn = db.conn().unwrap();
    {
        let lgsp::db::DbConnection::Sqlite(c) = &mut *conn else { panic!("sqlite") };
        c.run_next_migration(lgsp::db::SQLITE_MIGRATIONS).unwrap();
    }
    lgsp::audit::append(&mut conn, (1..=5).map(record).collect()).unwrap();
    drop(conn);

    let applied = db.migrate().unwrap();
    let all = diesel::migration::MigrationSource::<diesel::sqlite::Sqlite>::migrations(&lgsp::db::SQLITE_MIGRATIONS);
    let later: Vec<String> = all.unwrap().iter().skip(1).map(|m| m.name().version().to_string()).collect();
    assert!(later.len() >= 2 && later[0] == "20261202000001", "{later:?}");
    assert_eq!(applied, later, "the migrations after the first were left to apply");
    let mut conn = db.conn().unwrap();
    lgsp::audit::append(&mut conn, (6..=8).map(record).collect()).unwrap();
    let v = lgsp::audit::verify(&mut conn).unwrap();
    assert!(v.is_intact(), "{v:?}");
    assert_eq!((v.records, v.head_seq), (8, 8));
    let lgsp::db::DbConnection::Sqlite(c) = &mut *conn else { panic!("sqlite") };
    let indexes: Vec<Index> = diesel::sql_query("PRAGMA index_list(audit_log)").load(c).unwrap();
    let mut names: Vec<String> = indexes.into_iter().map(|i| i.name).collect();
    names.sort();
    assert_eq!(names, ["audit_log_partner", "audit_log_subject", "audit_log_ts"], "no separate index on seq");
}

#[test]
fn an_unknown_scheme_is_refused_without_creating_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.db");
    let err = Db::new(&Secret::new(format!("sqlit://{}", path.display())), &DatabaseSettings::default())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("\"sqlit\" is not supported"), "{err}");
    assert!(!path.exists());
}

#[tokio::test]
async fn a_saturated_pool_answers_unavailable_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path());
    let settings = DatabaseSettings { max_connections: 1, acquire_timeout_ms: 100, ..Default::default() };
    let db = Db::new(&Secret::new(&url), &settings).unwrap();
    db.migrate().unwrap();
    let held = db.conn().unwrap();
    let err = db.run(Db::ping).await.unwrap_err();
    assert!(matches!(err, DbError::Unavailable(_)), "{err:?}");
    let api: lgsp::error::ApiError = err.into();
    assert_eq!(api.code, lgsp::error::ErrorCode::DatabaseUnavailable);
    assert_eq!(api.retry_after, Some(1));
    drop(held);
    db.run(Db::ping).await.unwrap();
}

#[tokio::test]
async fn a_shipped_adapter_no_steward_changed_is_brought_up_to_date_at_start_and_a_stewards_is_left_alone() {
    use lgsp::catalog::store::{adapters, Publish};
    let app = crate::helpers::spawn_app().await;
    // As an earlier version shipped it: without the write operations.
    let mut old: serde_json::Value = serde_json::from_str(lgsp::adapter::SHIPPED[1].1).unwrap();
    for op in ["register_birth", "register_death", "application", "supplement"] {
        old["operations"].as_object_mut().unwrap().remove(op);
    }
    let mut stewards: serde_json::Value = serde_json::from_str(lgsp::adapter::SHIPPED[2].1).unwrap();
    stewards["upstream"]["timeout_ms"] = serde_json::json!(2500);
    let (old_text, stewards_text) = (old.to_string(), stewards.to_string());
    app.state
        .db
        .run(move |c| {
            adapters::publish(c, "civil_status", &old_text, "shipped", Publish::NewVersion)?;
            adapters::publish(c, "insurance", &stewards_text, "steward:adm_test", Publish::NewVersion)?;
            Ok(())
        })
        .await
        .unwrap();
    // The next node to start upgrades the one, and leaves the other.
    let _other = app.second_node().await;
    let (civil, insurance) = app
        .state
        .db
        .run(|c| Ok((adapters::current(c, "civil_status")?.unwrap(), adapters::current(c, "insurance")?.unwrap())))
        .await
        .unwrap();
    assert_eq!(civil.version, 3);
    assert_eq!(civil.document, lgsp::adapter::SHIPPED[1].1.trim());
    assert_eq!(insurance.version, 2, "a steward's version is theirs");
    let upgraded = app.audit("action=admin&resource=adapters&key_id=startup").await;
    assert!(upgraded.to_string().contains("\"upgraded\":\"civil_status\""), "{upgraded:#}");
}
