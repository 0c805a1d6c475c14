-- The revocation set: what revokes access tokens that are already issued
-- (they are JWTs and carry no state). Keep in step with
-- ../postgres/0004_revocations.sql. `kind` says what `subject`/`client_id`
-- name: 'grant' (subject = grant id), 'user' (subject = user id),
-- 'client' (client_id), 'consent' (subject = user id and client_id),
-- 'token' (subject = jti); the unused column holds ''. Rows die at
-- `expires_at` (the longest access-token lifetime after `revoked_at`) and
-- housekeeping deletes them. `revocation_state.revision` grows with every
-- change to the set, so readers ask "changed since N?" with one row.
CREATE TABLE revocations (
    kind       TEXT    NOT NULL CHECK (kind IN ('grant', 'user', 'client', 'consent', 'token')),
    subject    TEXT    NOT NULL,
    client_id  TEXT    NOT NULL,
    revoked_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revision   INTEGER NOT NULL,
    PRIMARY KEY (kind, subject, client_id)
);
CREATE INDEX revocations_expires ON revocations (expires_at);

CREATE TABLE revocation_state (
    id       INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
);
INSERT INTO revocation_state (id, revision) VALUES (1, 0);
