-- depends: 0006_revoked_tokens_no_delete
-- A version per task, bumped by the database on every write, so the API can give each task a
-- strong ETag and refuse a write whose If-Match names a version that is no longer current.

alter table tasks add column version bigint not null default 1;

comment on column tasks.version is
    'Starts at 1, incremented by trigger tasks_touch_updated_at on every update; the API''s ETag is "<id>.<version>".';

-- Replaces the 0002 definition: the same, plus the version bump. Clients cannot set version
-- (it is in no column grant), so only this trigger moves it.
create or replace function tasks_touch_updated_at() returns trigger
    language plpgsql
    set search_path = pg_catalog
as $$
begin
    new.updated_at := now();
    new.created_at := old.created_at;
    new.user_id := old.user_id;
    new.version := old.version + 1;
    return new;
end
$$;

comment on function tasks_touch_updated_at() is
    'Trigger: keeps updated_at current, bumps version, and makes created_at and user_id immutable.';
