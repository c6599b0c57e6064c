-- depends: 0001_request_role
-- The tasks table, in graphile/starter order: create, constraints, indexes, RLS, policies, grants.

create table tasks (
    id          bigint generated always as identity primary key,
    user_id     text not null default nullif(current_setting('app.user_id', true), ''),
    title       text not null,
    description text,
    completed   boolean not null default false,
    due_date    date,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    -- Constraints mirror the API's validation, so no client can store what the API would refuse.
    constraint tasks_user_id_length check (char_length(user_id) between 1 and 255),
    constraint tasks_title_trimmed check (title = btrim(title, E' \t\n\r\f\v')),
    constraint tasks_title_length check (char_length(title) between 1 and 200),
    constraint tasks_description_length check (char_length(description) <= 1000),
    constraint tasks_due_date_finite check (isfinite(due_date))
);

comment on table tasks is 'One row per todo item. Row-level security keeps each user to rows whose user_id equals app.user_id.';
comment on column tasks.id is 'Server-generated identity; never supplied by clients.';
comment on column tasks.user_id is 'Owner: the JWT sub of the user who created the task (Better Auth ids are 32-character strings).';
comment on column tasks.title is 'Stored trimmed, 1-200 characters.';
comment on column tasks.description is 'Optional, at most 1000 characters.';
comment on column tasks.completed is 'Whether the task is done.';
comment on column tasks.due_date is 'Optional due date; finite dates only.';
comment on column tasks.created_at is 'Set by the database on insert.';
comment on column tasks.updated_at is 'Kept current by trigger tasks_touch_updated_at on every update.';
comment on constraint tasks_user_id_length on tasks is 'JWT sub: non-empty, at most 255 characters.';
comment on constraint tasks_title_trimmed on tasks is 'Titles are stored without leading or trailing whitespace.';
comment on constraint tasks_title_length on tasks is 'Title is 1-200 characters after trimming.';
comment on constraint tasks_description_length on tasks is 'Description is at most 1000 characters.';
comment on constraint tasks_due_date_finite on tasks is 'Refuses infinity/-infinity, which the API cannot express.';

create function tasks_touch_updated_at() returns trigger
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

create trigger tasks_touch_updated_at
    before update on tasks
    for each row execute function tasks_touch_updated_at();

comment on trigger tasks_touch_updated_at on tasks is 'Keeps updated_at current; created_at and user_id never change.';

-- One index per list order, each ending in id so keyset pagination has a unique key and ties
-- never repeat or skip. Backward scans serve the opposite direction. Nulls-last due dates in
-- both directions are served by coalescing to +/-infinity (finite dates only, see the check).
create index tasks_user_created_idx on tasks (user_id, created_at, id);
create index tasks_user_updated_idx on tasks (user_id, updated_at, id);
create index tasks_user_title_idx on tasks (user_id, lower(title), id);
create index tasks_user_due_asc_idx on tasks (user_id, coalesce(due_date, 'infinity'::date), id);
create index tasks_user_due_desc_idx on tasks (user_id, coalesce(due_date, '-infinity'::date), id);

comment on index tasks_user_created_idx is 'List by created_at (default order) and per-user counts; keyset on (created_at, id).';
comment on index tasks_user_updated_idx is 'List by updated_at; keyset on (updated_at, id).';
comment on index tasks_user_title_idx is 'List by title, case-insensitive; keyset on (lower(title), id).';
comment on index tasks_user_due_asc_idx is 'List by due_date ascending, tasks without a due date last.';
comment on index tasks_user_due_desc_idx is 'List by due_date descending (backward scan), tasks without a due date last.';

alter table tasks enable row level security;
alter table tasks force row level security;

-- Fail closed: an unset or reset app.user_id reads as '' (or NULL), nullif makes it NULL, and
-- NULL = user_id is never true. The (select ...) wrapper lets Postgres evaluate it once per query.
create policy tasks_select on tasks for select to todo_app
    using (user_id = (select nullif(current_setting('app.user_id', true), '')));
create policy tasks_insert on tasks for insert to todo_app
    with check (user_id = (select nullif(current_setting('app.user_id', true), '')));
create policy tasks_update on tasks for update to todo_app
    using (user_id = (select nullif(current_setting('app.user_id', true), '')))
    with check (user_id = (select nullif(current_setting('app.user_id', true), '')));
create policy tasks_delete on tasks for delete to todo_app
    using (user_id = (select nullif(current_setting('app.user_id', true), '')));

comment on policy tasks_select on tasks is 'A request sees only the rows of the user in app.user_id; none when it is unset.';
comment on policy tasks_insert on tasks is 'A request may create rows only for the user in app.user_id.';
comment on policy tasks_update on tasks is 'A request may change only its own rows, and cannot hand them to another user.';
comment on policy tasks_delete on tasks is 'A request may delete only its own rows.';

grant select, delete on tasks to todo_app;
grant insert (user_id, title, description, completed, due_date) on tasks to todo_app;
grant update (title, description, completed, due_date) on tasks to todo_app;
