-- Per-key request rate overriding API_RATE_LIMIT: requests per period.
ALTER TABLE api_keys ADD COLUMN rate_limit_requests BIGINT;
ALTER TABLE api_keys ADD COLUMN rate_limit_period_seconds BIGINT;
