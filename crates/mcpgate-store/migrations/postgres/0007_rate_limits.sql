-- What replicas sharing this database need to act as one (see
-- ../sqlite/0007_rate_limits.sql, which explains the columns; keep in step).
CREATE TABLE rate_limits (
    key        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    tokens     DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    granted    BIGINT NOT NULL
);
CREATE INDEX rate_limits_updated ON rate_limits (updated_at);

CREATE TABLE fleet_replicas (
    id      TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    seen_at DOUBLE PRECISION NOT NULL
);
