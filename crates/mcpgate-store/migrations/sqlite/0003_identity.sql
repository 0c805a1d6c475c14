-- Upstream identity providers (issue 5): linked identities and the
-- server-side state of upstream sign-ins. Keep in step with
-- ../postgres/0003_identity.sql.
CREATE TABLE linked_identities (
    provider      TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email         TEXT,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX linked_identities_user ON linked_identities (user_id);

-- One row per upstream sign-in in flight: the state and the binding cookie
-- as SHA-256 hashes, the nonce as a hash, the PKCE verifier sealed under
-- the master key, and the authorization request it continues. Single use:
-- taken with one conditional DELETE … RETURNING.
CREATE TABLE upstream_states (
    state_hash      TEXT    NOT NULL PRIMARY KEY,
    binding_hash    TEXT    NOT NULL,
    provider        TEXT    NOT NULL,
    nonce_hash      TEXT    NOT NULL,
    sealed_verifier BLOB    NOT NULL,
    request_params  TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
);
CREATE INDEX upstream_states_expiry ON upstream_states (expires_at);
