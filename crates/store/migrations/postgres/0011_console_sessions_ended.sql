-- Console sessions signed out before their token expired, by token id
-- (jti), kept until that expiry (unix seconds): every replica sharing the
-- database, and this one after a restart, refuses them.
CREATE TABLE console_sessions_ended (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_ended_expires_idx ON console_sessions_ended (expires_at);
