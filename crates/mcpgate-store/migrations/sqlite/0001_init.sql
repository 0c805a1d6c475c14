-- mcpgate store schema, SQLite flavour. Keep in step with ../postgres/0001_init.sql:
-- same tables, columns and constraints; times are Unix seconds (INTEGER), lists are
-- JSON text, booleans 0/1, bytes BLOB. Dependents cascade on delete of their user,
-- client or refresh family (foreign_keys=ON is set on every connection).

CREATE TABLE users (
    id                   TEXT    NOT NULL PRIMARY KEY,
    username             TEXT    NOT NULL UNIQUE,
    display_name         TEXT,
    password_hash        TEXT,
    group_names          TEXT    NOT NULL,
    must_change_password BOOLEAN NOT NULL,
    disabled             BOOLEAN NOT NULL,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);

CREATE TABLE clients (
    client_id                  TEXT    NOT NULL PRIMARY KEY,
    kind                       TEXT    NOT NULL CHECK (kind IN ('pre_registered', 'dynamic', 'cimd')),
    client_name                TEXT,
    client_secret_hash         TEXT,
    token_endpoint_auth_method TEXT    NOT NULL,
    redirect_uris              TEXT    NOT NULL,
    grant_types                TEXT    NOT NULL,
    allowed_scopes             TEXT    NOT NULL,
    application_type           TEXT,
    client_uri                 TEXT,
    logo_uri                   TEXT,
    created_at                 INTEGER NOT NULL,
    expires_at                 INTEGER
);
CREATE INDEX clients_kind_created ON clients (kind, created_at);

CREATE TABLE consents (
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT    NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    scopes     TEXT    NOT NULL,
    resources  TEXT    NOT NULL,
    granted_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
CREATE INDEX consents_client ON consents (client_id);

CREATE TABLE auth_codes (
    code_hash      TEXT    NOT NULL PRIMARY KEY,
    client_id      TEXT    NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    user_id        TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    redirect_uri   TEXT    NOT NULL,
    scopes         TEXT    NOT NULL,
    resource       TEXT    NOT NULL,
    code_challenge TEXT    NOT NULL,
    auth_time      INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER
);
CREATE INDEX auth_codes_client ON auth_codes (client_id);
CREATE INDEX auth_codes_user ON auth_codes (user_id);
CREATE INDEX auth_codes_expires ON auth_codes (expires_at);

CREATE TABLE refresh_families (
    family_id  TEXT    NOT NULL PRIMARY KEY,
    client_id  TEXT    NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    resource   TEXT    NOT NULL,
    scopes     TEXT    NOT NULL,
    auth_time  INTEGER NOT NULL,
    code_hash  TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX refresh_families_user_client ON refresh_families (user_id, client_id);
CREATE INDEX refresh_families_client ON refresh_families (client_id);
CREATE INDEX refresh_families_code ON refresh_families (code_hash);

CREATE TABLE refresh_tokens (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    family_id  TEXT    NOT NULL REFERENCES refresh_families (family_id) ON DELETE CASCADE,
    scopes     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    rotated_at INTEGER
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- `seq` keeps insertion order for "oldest first" when two keys share a second.
CREATE TABLE signing_keys (
    seq          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    kid          TEXT    NOT NULL UNIQUE,
    alg          TEXT    NOT NULL,
    sealed_pkcs8 BLOB    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('active', 'previous', 'retired')),
    created_at   INTEGER NOT NULL,
    rotated_at   INTEGER,
    retired_at   INTEGER
);
-- Exactly one key signs: a second active key is a unique violation.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active';

CREATE TABLE login_sessions (
    session_hash TEXT    NOT NULL PRIMARY KEY,
    user_id      TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_time    INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX login_sessions_user ON login_sessions (user_id);
CREATE INDEX login_sessions_expires ON login_sessions (expires_at);
