-- depends: 0007_task_versions
-- Idempotency-Key on task creation (IETF httpapi draft): a retried create with the same key and
-- body answers the original 201 and creates nothing. The key is stored in the same transaction as
-- the task, so it exists exactly when the task was created; RLS keeps each user to their own keys.

create table idempotency_keys (
    user_id     text not null,
    key         text not null,
    fingerprint text not null,
    task_id     bigint not null,
    response    text not null,
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null default now() + interval '24 hours',
    primary key (user_id, key),
    constraint idempotency_keys_user_id_length check (char_length(user_id) between 1 and 255),
    -- Printable ASCII, space to tilde: a range, so no escape whose meaning differs by version.
    constraint idempotency_keys_key_shape check (char_length(key) between 1 and 255 and key ~ '^[ -~]+$'),
    constraint idempotency_keys_fingerprint_shape check (fingerprint ~ '^[0-9a-f]{64}$')
);

comment on table idempotency_keys is 'One row per Idempotency-Key a user created a task with; rows live 24 hours and are then purged.';
comment on column idempotency_keys.user_id is 'The JWT sub of the user who sent the key; keys are per user.';
comment on column idempotency_keys.key is 'The Idempotency-Key value (the sf-string''s content), 1-255 printable ASCII characters.';
comment on column idempotency_keys.fingerprint is 'SHA-256 (hex) of the normalized request body; a different body with the same key is refused.';
comment on column idempotency_keys.task_id is 'The task the original request created (it may have been deleted since; a replay never re-creates it).';
comment on column idempotency_keys.response is 'The original 201 response body (task JSON), answered again on replay.';
comment on column idempotency_keys.created_at is 'When the original request committed.';
comment on column idempotency_keys.expires_at is 'After this the key is forgotten: todo_purge_expired_idempotency_keys deletes the row.';
comment on constraint idempotency_keys_user_id_length on idempotency_keys is 'JWT sub: non-empty, at most 255 characters.';
comment on constraint idempotency_keys_key_shape on idempotency_keys is 'What the API accepts as a key: 1-255 printable ASCII characters.';
comment on constraint idempotency_keys_fingerprint_shape on idempotency_keys is 'A lowercase hex SHA-256.';

create index idempotency_keys_expires_idx on idempotency_keys (expires_at);
comment on index idempotency_keys_expires_idx is 'Purging expired keys (todo_purge_expired_idempotency_keys).';

alter table idempotency_keys enable row level security;
alter table idempotency_keys force row level security;

create policy idempotency_keys_select on idempotency_keys for select to todo_app
    using (user_id = (select nullif(current_setting('app.user_id', true), '')));
create policy idempotency_keys_insert on idempotency_keys for insert to todo_app
    with check (user_id = (select nullif(current_setting('app.user_id', true), '')));

comment on policy idempotency_keys_select on idempotency_keys is 'A request sees only its own user''s keys: nobody can probe another user''s.';
comment on policy idempotency_keys_insert on idempotency_keys is 'A request may record keys for its own user only.';

-- Keys are written once and never changed by the API; expired ones are purged below.
grant select on idempotency_keys to todo_app;
grant insert (user_id, key, fingerprint, task_id, response) on idempotency_keys to todo_app;

-- Purging every user's expired keys without widening what a request can see, like
-- todo_purge_expired_revocations (0003): owned by todo_maintenance, whose policies admit expired
-- rows only; todo_app may call it (a keyed create does, in its one statement) and gets a count.
grant select, delete on idempotency_keys to todo_maintenance;

create policy idempotency_keys_expired_select on idempotency_keys for select to todo_maintenance
    using (expires_at <= now());
create policy idempotency_keys_expired_delete on idempotency_keys for delete to todo_maintenance
    using (expires_at <= now());

comment on policy idempotency_keys_expired_select on idempotency_keys is 'Housekeeping sees only keys that have expired.';
comment on policy idempotency_keys_expired_delete on idempotency_keys is 'Housekeeping deletes only keys that have expired.';

create function todo_purge_expired_idempotency_keys()
    returns bigint
    language sql
    security definer
    set search_path = pg_catalog, public, pg_temp
as $$
    with purged as (
        delete from idempotency_keys where expires_at <= now() returning 1
    )
    select count(*) from purged
$$;

comment on function todo_purge_expired_idempotency_keys() is
    'Deletes every user''s expired idempotency keys and returns how many. SECURITY DEFINER as todo_maintenance, whose policies admit expired rows only; callable by todo_app.';

-- The new owner needs CREATE on the schema at the moment of the hand-over only.
grant create on schema public to todo_maintenance;
alter function todo_purge_expired_idempotency_keys() owner to todo_maintenance;
revoke create on schema public from todo_maintenance;

revoke all on function todo_purge_expired_idempotency_keys() from public;
grant execute on function todo_purge_expired_idempotency_keys() to todo_app;
