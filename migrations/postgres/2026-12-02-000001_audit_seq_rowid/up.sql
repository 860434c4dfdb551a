-- The SQLite migration of the same name makes the audit trail's seq the
-- table's rowid. PostgreSQL has no rowid: its primary key on seq is already
-- the table's one index on it, so nothing changes here. The migration exists
-- so that both backends list the same migrations.
SELECT 1;
