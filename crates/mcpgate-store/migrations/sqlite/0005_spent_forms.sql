-- One-time page forms (the consent form) that have been submitted, by the
-- SHA-256 of the form's random id. The primary key decides single use: a
-- second INSERT of the same id is a unique violation. Rows are only needed
-- while the form could still verify, so housekeeping deletes them after
-- `expires_at`. Keep in step with ../postgres/0005_spent_forms.sql.
CREATE TABLE spent_forms (
    form_hash  TEXT    NOT NULL PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX spent_forms_expires ON spent_forms (expires_at);
