-- mcpgate store schema, PostgreSQL flavour. Keep in step with ../sqlite/0001_init.sql:
-- same tables, columns and constraints; times are Unix seconds (BIGINT), lists are
-- JSON text, BOOLEAN, bytes BYTEA. Dependents cascade on delete of their user,
-- client or refresh family. Text uses the "C" collation so that sorted lists come
-- out in bytewise order, as in SQLite.

CREATE TABLE users (
    id                   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    username             TEXT COLLATE "C" NOT NULL UNIQUE,
    display_name         TEXT COLLATE "C",
    password_hash        TEXT COLLATE "C",
    group_names          TEXT COLLATE "C" NOT NULL,
    must_change_password BOOLEAN NOT NULL,
    disabled             BOOLEAN NOT NULL,
    created_at           BIGINT  NOT NULL,
    updated_at           BIGINT  NOT NULL
);

CREATE TABLE clients (
    client_id                  TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    kind                       TEXT COLLATE "C" NOT NULL CHECK (kind IN ('pre_registered', 'dynamic', 'cimd')),
    client_name                TEXT COLLATE "C",
    client_secret_hash         TEXT COLLATE "C",
    token_endpoint_auth_method TEXT COLLATE "C" NOT NULL,
    redirect_uris              TEXT COLLATE "C" NOT NULL,
    grant_types                TEXT COLLATE "C" NOT NULL,
    allowed_scopes             TEXT COLLATE "C" NOT NULL,
    application_type           TEXT COLLATE "C",
    client_uri                 TEXT COLLATE "C",
    logo_uri                   TEXT COLLATE "C",
    created_at                 BIGINT  NOT NULL,
    expires_at                 BIGINT
);
CREATE INDEX clients_kind_created ON clients (kind, created_at);

CREATE TABLE consents (
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT COLLATE "C" NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    scopes     TEXT COLLATE "C" NOT NULL,
    resources  TEXT COLLATE "C" NOT NULL,
    granted_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
CREATE INDEX consents_client ON consents (client_id);

CREATE TABLE auth_codes (
    code_hash      TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    client_id      TEXT COLLATE "C" NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    user_id        TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    redirect_uri   TEXT COLLATE "C" NOT NULL,
    scopes         TEXT COLLATE "C" NOT NULL,
    resource       TEXT COLLATE "C" NOT NULL,
    code_challenge TEXT COLLATE "C" NOT NULL,
    auth_time      BIGINT  NOT NULL,
    created_at     BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    used_at        BIGINT
);
CREATE INDEX auth_codes_client ON auth_codes (client_id);
CREATE INDEX auth_codes_user ON auth_codes (user_id);
CREATE INDEX auth_codes_expires ON auth_codes (expires_at);

CREATE TABLE refresh_families (
    family_id  TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    client_id  TEXT COLLATE "C" NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    resource   TEXT COLLATE "C" NOT NULL,
    scopes     TEXT COLLATE "C" NOT NULL,
    auth_time  BIGINT  NOT NULL,
    code_hash  TEXT COLLATE "C",
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX refresh_families_user_client ON refresh_families (user_id, client_id);
CREATE INDEX refresh_families_client ON refresh_families (client_id);
CREATE INDEX refresh_families_code ON refresh_families (code_hash);

CREATE TABLE refresh_tokens (
    token_hash TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    family_id  TEXT COLLATE "C" NOT NULL REFERENCES refresh_families (family_id) ON DELETE CASCADE,
    scopes     TEXT COLLATE "C" NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    rotated_at BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- `seq` keeps insertion order for "oldest first" when two keys share a second.
CREATE TABLE signing_keys (
    seq          BIGINT  NOT NULL GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kid          TEXT COLLATE "C" NOT NULL UNIQUE,
    alg          TEXT COLLATE "C" NOT NULL,
    sealed_pkcs8 BYTEA   NOT NULL,
    state        TEXT COLLATE "C" NOT NULL CHECK (state IN ('active', 'previous', 'retired')),
    created_at   BIGINT  NOT NULL,
    rotated_at   BIGINT,
    retired_at   BIGINT
);
-- Exactly one key signs: a second active key is a unique violation.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active';

CREATE TABLE login_sessions (
    session_hash TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_time    BIGINT  NOT NULL,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL
);
CREATE INDEX login_sessions_user ON login_sessions (user_id);
CREATE INDEX login_sessions_expires ON login_sessions (expires_at);
