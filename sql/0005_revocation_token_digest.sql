-- depends: 0004_title_trimmed_portable
-- A jti of any length is revocable: revoked_tokens.token_id now holds a fixed-size digest of the
-- jti ('jti-sha256:' || hex of SHA-256 over its UTF-8), as the verifier computes it, instead of
-- the raw 'jti:<jti>' that the 300-character check refused beyond about 300 characters.

alter table revoked_tokens drop constraint revoked_tokens_token_id_length;

-- Tokens revoked before this migration stay revoked: their rows are rewritten to the name the
-- verifier now gives them. RLS is forced on the table and no policy admits the owner, so without
-- lifting FORCE for this transaction the update would silently see no row.
alter table revoked_tokens no force row level security;

update revoked_tokens
    set token_id = 'jti-sha256:' || encode(sha256(convert_to(substr(token_id, 5), 'UTF8')), 'hex')
    where token_id like 'jti:%';

alter table revoked_tokens force row level security;

alter table revoked_tokens add constraint revoked_tokens_token_id_digest
    check (token_id ~ '^(jti-sha256|sha256):[0-9a-f]{64}$');

comment on column revoked_tokens.token_id is 'jti-sha256:<hex SHA-256 of the jti''s UTF-8> when the token has a jti, else sha256:<hex SHA-256 of the whole canonical token>. An ES256 token without jti has two rows, one per valid spelling of its signature.';
comment on constraint revoked_tokens_token_id_digest on revoked_tokens is 'Only the two fixed-size digest shapes the verifier produces, so a jti of any length fits.';
