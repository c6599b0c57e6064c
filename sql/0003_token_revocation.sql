-- depends: 0002_tasks
-- Revocation state lives in Postgres so every replica sees it at once, under the same RLS.

create table revoked_tokens (
    user_id    text not null,
    token_id   text not null,
    expires_at timestamptz not null,
    revoked_at timestamptz not null default now(),
    primary key (user_id, token_id),
    constraint revoked_tokens_user_id_length check (char_length(user_id) between 1 and 255),
    constraint revoked_tokens_token_id_length check (char_length(token_id) between 1 and 300)
);

comment on table revoked_tokens is 'Single tokens revoked before their expiry (DELETE /api/users/me/token). Rows past expires_at no longer matter and are purged.';
comment on column revoked_tokens.user_id is 'The token''s sub.';
comment on column revoked_tokens.token_id is 'jti:<jti> when the token has a jti, else sha256:<hex of the whole token>.';
comment on column revoked_tokens.expires_at is 'The token''s exp plus the verifier''s leeway; after it the token is refused as expired anyway, todo_begin_request ignores the row and todo_purge_expired_revocations deletes it.';
comment on column revoked_tokens.revoked_at is 'When the revocation was recorded.';
comment on constraint revoked_tokens_user_id_length on revoked_tokens is 'JWT sub: non-empty, at most 255 characters.';
comment on constraint revoked_tokens_token_id_length on revoked_tokens is 'A jti is at most 255 characters plus the jti: prefix; a sha256 is 71 characters.';

create index revoked_tokens_expires_idx on revoked_tokens (expires_at);
comment on index revoked_tokens_expires_idx is 'Purging expired revocations (todo_purge_expired_revocations).';

create table user_token_revocations (
    user_id        text primary key,
    revoked_before timestamptz not null,
    constraint user_token_revocations_user_id_length check (char_length(user_id) between 1 and 255)
);

comment on table user_token_revocations is 'Revoke-all (DELETE /api/users/me/tokens): every token of the user issued at or before revoked_before is refused, and so is every token without iat.';
comment on column user_token_revocations.user_id is 'The user whose tokens were revoked.';
comment on column user_token_revocations.revoked_before is 'Tokens with iat at or before this moment are refused.';
comment on constraint user_token_revocations_user_id_length on user_token_revocations is 'JWT sub: non-empty, at most 255 characters.';

alter table revoked_tokens enable row level security;
alter table revoked_tokens force row level security;
alter table user_token_revocations enable row level security;
alter table user_token_revocations force row level security;

create policy revoked_tokens_select on revoked_tokens for select to todo_app
    using (user_id = (select nullif(current_setting('app.user_id', true), '')));
create policy revoked_tokens_insert on revoked_tokens for insert to todo_app
    with check (user_id = (select nullif(current_setting('app.user_id', true), '')));
create policy revoked_tokens_update on revoked_tokens for update to todo_app
    using (user_id = (select nullif(current_setting('app.user_id', true), '')))
    with check (user_id = (select nullif(current_setting('app.user_id', true), '')));
create policy revoked_tokens_delete on revoked_tokens for delete to todo_app
    using (user_id = (select nullif(current_setting('app.user_id', true), '')));

comment on policy revoked_tokens_select on revoked_tokens is 'A request sees only its own user''s revocations.';
comment on policy revoked_tokens_insert on revoked_tokens is 'A request may revoke only its own user''s tokens.';
comment on policy revoked_tokens_update on revoked_tokens is 'Re-revoking a token (upsert) touches only the user''s own rows.';
comment on policy revoked_tokens_delete on revoked_tokens is 'A request may delete only its own user''s revocations (the API never does; expired rows of every user are purged by todo_purge_expired_revocations).';

create policy user_token_revocations_select on user_token_revocations for select to todo_app
    using (user_id = (select nullif(current_setting('app.user_id', true), '')));
create policy user_token_revocations_insert on user_token_revocations for insert to todo_app
    with check (user_id = (select nullif(current_setting('app.user_id', true), '')));
create policy user_token_revocations_update on user_token_revocations for update to todo_app
    using (user_id = (select nullif(current_setting('app.user_id', true), '')))
    with check (user_id = (select nullif(current_setting('app.user_id', true), '')));

comment on policy user_token_revocations_select on user_token_revocations is 'A request sees only its own user''s revoke-all marker.';
comment on policy user_token_revocations_insert on user_token_revocations is 'A request may revoke all tokens of its own user only.';
comment on policy user_token_revocations_update on user_token_revocations is 'Moving the revoke-all marker forward touches only the user''s own row.';

grant select, insert, delete on revoked_tokens to todo_app;
grant update (expires_at, revoked_at) on revoked_tokens to todo_app;
grant select, insert on user_token_revocations to todo_app;
grant update (revoked_before) on user_token_revocations to todo_app;

-- The first statement of every request transaction, in the same round trip as the route's own
-- statement. Before anything is read it enters the request role todo_app for the rest of the
-- transaction (set_config('role', ..., true) is SET LOCAL ROLE), then sets the statement timeout
-- and app.user_id, transaction-local too, and refuses a revoked token with SQLSTATE 28000
-- (invalid_authorization_specification), which aborts everything queued after it. Its revocation
-- reads therefore run as todo_app, under RLS, like the route's statement.
create function todo_begin_request(
    p_user_id text, p_token_id text, p_issued_at timestamptz, p_statement_timeout text
)
    returns void
    language plpgsql
    set search_path = pg_catalog, public
as $$
begin
    perform set_config('role', 'todo_app', true);
    perform set_config('statement_timeout', p_statement_timeout, true);
    perform set_config('app.user_id', p_user_id, true);
    if exists (
        select from revoked_tokens r
        where r.user_id = p_user_id and r.token_id = p_token_id and r.expires_at > now()
    ) or exists (
        select from user_token_revocations u
        where u.user_id = p_user_id and (p_issued_at is null or p_issued_at <= u.revoked_before)
    ) then
        raise exception using errcode = '28000', message = 'token revoked';
    end if;
end
$$;

comment on function todo_begin_request(text, text, timestamptz, text) is
    'First statement of every request transaction: enters role todo_app, sets statement_timeout and app.user_id (all transaction-local), and raises SQLSTATE 28000 if the token is revoked. SECURITY INVOKER: entering todo_app needs membership in it, so calling it grants nothing.';

-- The login role calls it before it has entered todo_app; it is harmless to anyone else (it changes
-- only the caller's own transaction settings, and SET ROLE todo_app fails without membership).
grant execute on function todo_begin_request(text, text, timestamptz, text) to public;

-- Purging every user's expired revocations without widening what a request can see.
-- todo_maintenance is a NOLOGIN role used only as the owner of one SECURITY DEFINER function; its
-- policies let it see and delete rows whose expires_at has passed, and nothing else. Those rows
-- no longer have any effect (todo_begin_request ignores them, the verifier refuses the expired
-- token by itself), so deleting them changes no answer. todo_app may call the function (the revoke
-- statements do, in their single round trip) but gains no read access: it returns a count only.
do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'todo_maintenance') then
        create role todo_maintenance nologin nosuperuser nocreatedb nocreaterole noinherit noreplication nobypassrls;
    end if;
end
$$;

comment on role todo_maintenance is
    'todo-api housekeeping: NOLOGIN, no BYPASSRLS; owns only todo_purge_expired_revocations(), which deletes expired token revocations.';

-- Membership lets the migration role hand the function over (ALTER ... OWNER TO needs it).
grant todo_maintenance to current_user;
grant usage on schema public to todo_maintenance;
grant select, delete on revoked_tokens to todo_maintenance;

create policy revoked_tokens_expired_select on revoked_tokens for select to todo_maintenance
    using (expires_at <= now());
create policy revoked_tokens_expired_delete on revoked_tokens for delete to todo_maintenance
    using (expires_at <= now());

comment on policy revoked_tokens_expired_select on revoked_tokens is 'Housekeeping sees only revocations that have expired (and so no longer matter).';
comment on policy revoked_tokens_expired_delete on revoked_tokens is 'Housekeeping deletes only revocations that have expired.';

create function todo_purge_expired_revocations()
    returns bigint
    language sql
    security definer
    set search_path = pg_catalog, public, pg_temp
as $$
    with purged as (
        delete from revoked_tokens where expires_at <= now() returning 1
    )
    select count(*) from purged
$$;

comment on function todo_purge_expired_revocations() is
    'Deletes every user''s expired token revocations and returns how many. SECURITY DEFINER as todo_maintenance, whose policies admit expired rows only; callable by todo_app.';

-- The new owner needs CREATE on the schema at the moment of the hand-over only.
grant create on schema public to todo_maintenance;
alter function todo_purge_expired_revocations() owner to todo_maintenance;
revoke create on schema public from todo_maintenance;

revoke all on function todo_purge_expired_revocations() from public;
grant execute on function todo_purge_expired_revocations() to todo_app;
