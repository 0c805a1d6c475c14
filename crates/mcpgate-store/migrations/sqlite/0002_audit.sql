-- The gateway's audit log: one row per decision. Keep in step with
-- ../postgres/0002_audit.sql. Times are Unix milliseconds; never tokens or
-- tool arguments.
CREATE TABLE audit_log (
    seq        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    time_ms    INTEGER NOT NULL,
    request_id TEXT    NOT NULL,
    issuer     TEXT,
    subject    TEXT,
    client_id  TEXT,
    upstream   TEXT    NOT NULL,
    method     TEXT,
    tool       TEXT,
    decision   TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    status     INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL
);
CREATE INDEX audit_log_time ON audit_log (time_ms);
