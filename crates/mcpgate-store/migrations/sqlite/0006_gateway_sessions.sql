-- Gateway sessions (Mcp-Session-Id) shared by every replica on one
-- database. The id itself is never stored: `id_hash` is its SHA-256.
-- `replica` is the random id of the process that made the session;
-- `state` is what another replica needs to carry the session on (an HTTP
-- upstream's session id), sealed under a key derived from the master key
-- with the id hash as associated data; NULL when the session lives in one
-- process only (a stdio child). Times are milliseconds since the epoch.
-- Keep in step with ../postgres/0006_gateway_sessions.sql.
CREATE TABLE gateway_sessions (
    id_hash    TEXT NOT NULL PRIMARY KEY,
    upstream   TEXT NOT NULL,
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    replica    TEXT NOT NULL,
    state      BLOB,
    created_at INTEGER NOT NULL,
    last_used  INTEGER NOT NULL
);
CREATE INDEX gateway_sessions_owner ON gateway_sessions (upstream, issuer, subject, last_used);
CREATE INDEX gateway_sessions_replica ON gateway_sessions (replica);
CREATE INDEX gateway_sessions_last_used ON gateway_sessions (last_used);
