-- The least-privilege role every API request runs as (SET LOCAL ROLE todo_app).
-- NOLOGIN: nobody connects as it; the service's login role switches to it inside each request
-- transaction. It is not a superuser, cannot bypass RLS and owns nothing, so the policies in the
-- later migrations are the whole of what a request may see and change.
-- Roles are cluster-wide: the role is created only when missing, so several databases on one
-- cluster (tests, staging) can share it.
do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'todo_app') then
        create role todo_app nologin nosuperuser nocreatedb nocreaterole noinherit noreplication nobypassrls;
    end if;
end
$$;

comment on role todo_app is
    'todo-api request role: NOLOGIN, no BYPASSRLS, owns nothing; entered with SET LOCAL ROLE in every request transaction.';

-- The login role (the one in DATABASE_URL, which runs these migrations) must be able to enter it.
grant todo_app to current_user;

grant usage on schema public to todo_app;
