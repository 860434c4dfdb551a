DROP INDEX sync_dossiers_received;
ALTER TABLE sync_dossiers DROP COLUMN received_on;
