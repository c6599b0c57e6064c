-- The 0002 definition of the trigger function, without the version bump.
create or replace function tasks_touch_updated_at() returns trigger
    language plpgsql
    set search_path = pg_catalog
as $$
begin
    new.updated_at := now();
    new.created_at := old.created_at;
    new.user_id := old.user_id;
    return new;
end
$$;

comment on function tasks_touch_updated_at() is
    'Trigger: keeps updated_at current and makes created_at and user_id immutable.';

alter table tasks drop column version;
