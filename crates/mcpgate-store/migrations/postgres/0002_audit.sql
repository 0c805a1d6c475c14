-- The gateway's audit log: one row per decision. Keep in step with
-- ../sqlite/0002_audit.sql. Times are Unix milliseconds; never tokens or
-- tool arguments.
CREATE TABLE audit_log (
    seq        BIGSERIAL NOT NULL PRIMARY KEY,
    time_ms    BIGINT    NOT NULL,
    request_id TEXT COLLATE "C" NOT NULL,
    issuer     TEXT COLLATE "C",
    subject    TEXT COLLATE "C",
    client_id  TEXT COLLATE "C",
    upstream   TEXT COLLATE "C" NOT NULL,
    method     TEXT COLLATE "C",
    tool       TEXT COLLATE "C",
    decision   TEXT COLLATE "C" NOT NULL,
    reason     TEXT COLLATE "C" NOT NULL,
    status     BIGINT    NOT NULL,
    latency_ms BIGINT    NOT NULL
);
CREATE INDEX audit_log_time ON audit_log (time_ms);
