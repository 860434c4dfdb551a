DROP TABLE portal_outbox;
DROP TABLE sync_events;
DROP TABLE sync_dossiers;
