-- Fleet-wide rate limits: one token bucket per key (`rate_limits`), shared
-- by every replica of a PostgreSQL deployment. `tokens` is what the bucket
-- holds as of `updated_at` (seconds, the database's clock, so replicas'
-- clocks do not matter); one conditional upsert refills it for the time
-- since and takes whole tokens out, recording how many in `granted` for
-- RETURNING. A bucket idle for a whole window is full, so housekeeping
-- deletes it. `fleet_replicas` holds a heartbeat per running replica (what
-- a replica divides its limits by when the database stops answering).
-- SQLite is one node: mcpgate keeps its limits in memory there and these
-- tables stay empty. Keep in step with ../postgres/0007_rate_limits.sql.
CREATE TABLE rate_limits (
    key        TEXT    NOT NULL PRIMARY KEY,
    tokens     REAL    NOT NULL,
    updated_at REAL    NOT NULL,
    granted    INTEGER NOT NULL
);
CREATE INDEX rate_limits_updated ON rate_limits (updated_at);

CREATE TABLE fleet_replicas (
    id      TEXT NOT NULL PRIMARY KEY,
    seen_at REAL NOT NULL
);
