-- Upstream identity providers (issue 5): linked identities and the
-- server-side state of upstream sign-ins. Keep in step with
-- ../sqlite/0003_identity.sql.
CREATE TABLE linked_identities (
    provider      TEXT COLLATE "C" NOT NULL,
    subject       TEXT COLLATE "C" NOT NULL,
    user_id       TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email         TEXT COLLATE "C",
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX linked_identities_user ON linked_identities (user_id);

-- One row per upstream sign-in in flight: the state and the binding cookie
-- as SHA-256 hashes, the nonce as a hash, the PKCE verifier sealed under
-- the master key, and the authorization request it continues. Single use:
-- taken with one conditional DELETE … RETURNING.
CREATE TABLE upstream_states (
    state_hash      TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    binding_hash    TEXT COLLATE "C" NOT NULL,
    provider        TEXT COLLATE "C" NOT NULL,
    nonce_hash      TEXT COLLATE "C" NOT NULL,
    sealed_verifier BYTEA  NOT NULL,
    request_params  TEXT COLLATE "C" NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX upstream_states_expiry ON upstream_states (expires_at);
