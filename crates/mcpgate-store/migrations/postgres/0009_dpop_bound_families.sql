-- The RFC 7638 thumbprint of the key a refresh-token family is bound to
-- (DPoP, RFC 9449 §5: a public client's refresh tokens are bound to the key
-- of the proof that obtained them). NULL for a family that is not bound.
-- Keep in step with ../sqlite/0009_dpop_bound_families.sql.
ALTER TABLE refresh_families ADD COLUMN dpop_jkt TEXT;
