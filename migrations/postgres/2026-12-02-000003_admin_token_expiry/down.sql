ALTER TABLE admin_tokens DROP COLUMN expires_at;
