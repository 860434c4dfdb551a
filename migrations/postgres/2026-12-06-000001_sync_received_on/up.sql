-- The day a synced dossier was received (yyyyMMdd, Vietnam's time), kept
-- beside its record so that a period's reconciliation reads only its days.
ALTER TABLE sync_dossiers ADD COLUMN received_on TEXT NOT NULL DEFAULT '';
UPDATE sync_dossiers SET received_on = substr(record::json->>'NgayTiepNhan', 1, 8);
CREATE INDEX sync_dossiers_received ON sync_dossiers (received_on);
