-- The triggers of 0007 and 0009 and the constraint of 0004, as they were.
drop trigger tasks_before_write on tasks;
drop function tasks_before_write();
drop type task_api_fields;

create function tasks_touch_updated_at() returns trigger
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

create trigger tasks_touch_updated_at
    before update on tasks
    for each row execute function tasks_touch_updated_at();

comment on trigger tasks_touch_updated_at on tasks is 'Keeps updated_at current; created_at and user_id never change.';

create function tasks_write_api_json() returns trigger
    language plpgsql
    set search_path = pg_catalog
as $$
begin
    new.api_json := row_to_json(task)::text from (
        select new.id as id, new.user_id as user_id, new.title as title,
               new.description as description, new.completed as completed,
               new.due_date as due_date,
               to_char(new.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                   as created_at,
               to_char(new.updated_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                   as updated_at
    ) as task;
    return new;
end
$$;

comment on function tasks_write_api_json() is
    'Trigger: renders tasks.api_json from the row as written (after tasks_touch_updated_at).';

create trigger tasks_write_api_json
    before insert or update on tasks
    for each row execute function tasks_write_api_json();

comment on trigger tasks_write_api_json on tasks is
    'Renders api_json; named to fire after tasks_touch_updated_at (same-event triggers fire in name order).';

alter table tasks drop constraint tasks_title_trimmed;

alter table tasks add constraint tasks_title_trimmed check (
    title = btrim(
        title,
        chr(9) || chr(10) || chr(11) || chr(12) || chr(13) || chr(32) || chr(133) || chr(160)
        || chr(5760) || chr(8192) || chr(8193) || chr(8194) || chr(8195) || chr(8196)
        || chr(8197) || chr(8198) || chr(8199) || chr(8200) || chr(8201) || chr(8202)
        || chr(8232) || chr(8233) || chr(8239) || chr(8287) || chr(12288)
    )
);

comment on constraint tasks_title_trimmed on tasks is
    'Titles are stored without leading or trailing whitespace: the 25 code points of Unicode White_Space (U+0009-U+000D, U+0020, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000), the set the API trims.';
