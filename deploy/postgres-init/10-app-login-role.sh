#!/bin/sh
# Runs once, when the official postgres image initialises an empty data volume
# (/docker-entrypoint-initdb.d). Creates the login role todo-api connects as and the database it
# owns. The role is NOT a superuser and cannot bypass RLS: it has CREATEROLE only so the
# migrations can create their NOLOGIN roles (todo_app, todo_maintenance). Roles are cluster-wide.
set -e

psql -v ON_ERROR_STOP=1 --no-psqlrc \
    --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" \
    --set app_user="$APP_DB_USER" --set app_password="$APP_DB_PASSWORD" \
    --set app_db="$APP_DB_NAME" <<'SQL'
create role :"app_user" login nosuperuser nocreatedb createrole noreplication nobypassrls
    password :'app_password';
comment on role :"app_user" is
    'todo-api login role: owns the todo-api database and its tables; every request switches to todo_app.';

-- Another todo-api database on this cluster may have created the NOLOGIN roles of the migrations
-- already: let this login role enter and grant them (the migrations run
-- `grant <role> to current_user`). On a fresh cluster this does nothing.
select format('grant %I to %I with admin option', rolname, :'app_user')
from pg_roles where rolname in ('todo_app', 'todo_maintenance') \gexec

create database :"app_db" owner :"app_user";
revoke all on database :"app_db" from public;
SQL
