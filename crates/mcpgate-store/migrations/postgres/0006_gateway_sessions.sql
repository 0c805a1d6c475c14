-- Gateway sessions (Mcp-Session-Id) shared by every replica on one
-- database. The id itself is never stored: `id_hash` is its SHA-256.
-- `replica` is the random id of the process that made the session;
-- `state` is what another replica needs to carry the session on (an HTTP
-- upstream's session id), sealed under a key derived from the master key
-- with the id hash as associated data; NULL when the session lives in one
-- process only (a stdio child). Times are milliseconds since the epoch.
-- Keep in step with ../sqlite/0006_gateway_sessions.sql.
CREATE TABLE gateway_sessions (
    id_hash    TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    upstream   TEXT COLLATE "C" NOT NULL,
    issuer     TEXT COLLATE "C" NOT NULL,
    subject    TEXT COLLATE "C" NOT NULL,
    client_id  TEXT COLLATE "C" NOT NULL,
    replica    TEXT COLLATE "C" NOT NULL,
    state      BYTEA,
    created_at BIGINT NOT NULL,
    last_used  BIGINT NOT NULL
);
CREATE INDEX gateway_sessions_owner ON gateway_sessions (upstream, issuer, subject, last_used);
CREATE INDEX gateway_sessions_replica ON gateway_sessions (replica);
CREATE INDEX gateway_sessions_last_used ON gateway_sessions (last_used);
