-- The vault of per-user upstream credentials (`auth = { type = "user_oauth" }`):
-- one row per (user, upstream), the token response sealed under the master
-- key and bound to (user, upstream), never stored in the clear. `scope` is
-- what the upstream's authorization server granted; `expires_at` the access
-- token's expiry when known. `refresh_lease_until` is the end of the lease
-- of the refresh in flight (0 when none is): taken and ended with one
-- conditional UPDATE each, so one replica refreshes at a time. Goes with
-- its user. Times are Unix seconds.
-- Keep in step with ../sqlite/0010_upstream_grants.sql.
CREATE TABLE upstream_grants (
    user_id             TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    upstream            TEXT COLLATE "C" NOT NULL,
    sealed_tokens       BYTEA  NOT NULL,
    scope               TEXT COLLATE "C" NOT NULL,
    expires_at          BIGINT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    refresh_lease_until BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, upstream)
);
