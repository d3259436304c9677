-- What a key's agent tasks may use (JSON); NULL means the defaults.
ALTER TABLE api_keys ADD COLUMN task_profile TEXT;
