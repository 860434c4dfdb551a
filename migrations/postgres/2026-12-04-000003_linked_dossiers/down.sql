DROP TABLE results;
DROP TABLE dossier_callbacks;
DROP TABLE dossier_events;
DROP TABLE dossier_steps;
DROP TABLE dossier_days;
DROP TABLE dossiers;
DROP TABLE flow_versions;
DROP TABLE flows;
