-- The revocation set: what revokes access tokens that are already issued
-- (they are JWTs and carry no state). Keep in step with
-- ../sqlite/0004_revocations.sql, which explains the columns. Every write
-- also sends NOTIFY mcpgate_revocations (payload: the new revision) in its
-- transaction, so other processes sharing the database reload at once.
CREATE TABLE revocations (
    kind       TEXT COLLATE "C" NOT NULL CHECK (kind IN ('grant', 'user', 'client', 'consent', 'token')),
    subject    TEXT COLLATE "C" NOT NULL,
    client_id  TEXT COLLATE "C" NOT NULL,
    revoked_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revision   BIGINT NOT NULL,
    PRIMARY KEY (kind, subject, client_id)
);
CREATE INDEX revocations_expires ON revocations (expires_at);

CREATE TABLE revocation_state (
    id       BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    revision BIGINT NOT NULL
);
INSERT INTO revocation_state (id, revision) VALUES (1, 0);
