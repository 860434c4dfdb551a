ALTER TABLE admin_tokens DROP COLUMN last_used_at;
