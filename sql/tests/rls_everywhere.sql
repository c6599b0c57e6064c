-- pgTAP: every table holding user data (a user_id column) has row-level security enabled AND
-- forced, and the request role todo_app cannot bypass it. Read-only; rolled back all the same.
begin;
select plan(5);

select isnt_empty($$select c.relname from pg_class c
                    join pg_namespace n on n.oid = c.relnamespace
                    join pg_attribute a on a.attrelid = c.oid
                    where n.nspname = current_schema() and c.relkind in ('r', 'p')
                      and a.attname = 'user_id' and not a.attisdropped$$,
                  'the schema holds tables with user data (migrations applied)');
select is_empty($$select c.relname from pg_class c
                  join pg_namespace n on n.oid = c.relnamespace
                  join pg_attribute a on a.attrelid = c.oid
                  where n.nspname = current_schema() and c.relkind in ('r', 'p')
                    and a.attname = 'user_id' and not a.attisdropped
                    and not (c.relrowsecurity and c.relforcerowsecurity)$$,
                'every table with a user_id column has row-level security enabled and forced');
select ok(not (select rolsuper from pg_roles where rolname = 'todo_app'),
          'todo_app is not a superuser');
select ok(not (select rolbypassrls from pg_roles where rolname = 'todo_app'),
          'todo_app does not have BYPASSRLS');
select ok(not (select rolcanlogin from pg_roles where rolname = 'todo_app'),
          'todo_app cannot log in');

select * from finish();
rollback;
