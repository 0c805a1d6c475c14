-- The public keys of clients that authenticate with private_key_jwt
-- (RFC 7523 §2.2): a JWK set as JSON text, or the https URL it is fetched
-- from (never both; the AS checks that). NULL for every other client.
-- Keep in step with ../sqlite/0008_client_keys.sql.
ALTER TABLE clients ADD COLUMN jwks TEXT;
ALTER TABLE clients ADD COLUMN jwks_uri TEXT;
