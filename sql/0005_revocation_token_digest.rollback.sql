-- The raw jti values cannot be restored: the digest is one-way. Code from before 0005 names a
-- jti-revoked token 'jti:<jti>' and would no longer match its row, so that token would become
-- valid again. To fail closed, every user with a live jti revocation instead gets a revoke-all
-- marker covering the moment of their latest one; one hour past it covers any token accepted
-- then (its iat may lie up to the leeway, at most 3600 s, in the future). Those users sign in
-- again; no revoked token becomes valid. The digest rows are kept (they fit the old check) so
-- that applying 0005 again restores the exact revocations.

alter table revoked_tokens no force row level security;
alter table user_token_revocations no force row level security;

insert into user_token_revocations (user_id, revoked_before)
select user_id, max(revoked_at) + interval '1 hour'
from revoked_tokens
where token_id like 'jti-sha256:%' and expires_at > now()
group by user_id
on conflict (user_id) do update
    set revoked_before = greatest(user_token_revocations.revoked_before, excluded.revoked_before);

alter table user_token_revocations force row level security;
alter table revoked_tokens force row level security;

alter table revoked_tokens drop constraint revoked_tokens_token_id_digest;
alter table revoked_tokens add constraint revoked_tokens_token_id_length
    check (char_length(token_id) between 1 and 300);

comment on column revoked_tokens.token_id is 'jti:<jti> when the token has a jti, else sha256:<hex of the whole token>.';
comment on constraint revoked_tokens_token_id_length on revoked_tokens is 'A jti is at most 255 characters plus the jti: prefix; a sha256 is 71 characters.';
