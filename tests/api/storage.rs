use crate::helpers::{fresh_database_url, postgres_server};
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
    assert_eq!(first.len(), 1, "{first:?}");
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
