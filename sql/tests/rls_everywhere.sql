-- pgTAP: every table holding user data (a user_id column) has row-level security enabled AND
-- forced, the request role todo_app cannot bypass it, and every policy of todo_app reads the user
-- through todo_current_user_id() (0009), which stays inlinable so the plans keep their index
-- walks. Rolled back at the end.
begin;
select plan(19);

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

-- The one function for the current user, and what keeps it inlinable.
select has_function('todo_current_user_id', '{}'::name[], 'todo_current_user_id() exists');
select function_returns('todo_current_user_id', '{}'::name[], 'text',
                        'todo_current_user_id() returns text');
select function_lang_is('todo_current_user_id', '{}'::name[], 'sql',
                        'todo_current_user_id() is LANGUAGE sql (inlinable)');
select volatility_is('todo_current_user_id', '{}'::name[], 'stable',
                     'todo_current_user_id() is STABLE');
select isnt_definer('todo_current_user_id', '{}'::name[],
                    'todo_current_user_id() is not SECURITY DEFINER');
select ok((select proconfig is null and proparallel = 's' and not proisstrict from pg_proc
           where oid = 'todo_current_user_id()'::regprocedure),
          'todo_current_user_id() has no SET clause, is PARALLEL SAFE and not STRICT');
select ok(not has_function_privilege('public', 'todo_current_user_id()', 'EXECUTE'),
          'PUBLIC may not execute todo_current_user_id()');
select ok(has_function_privilege('todo_app', 'todo_current_user_id()', 'EXECUTE'),
          'todo_app may execute todo_current_user_id() (its policies call it)');

-- Every policy of the request role compares user_id with the function and nothing else.
select isnt_empty($$select from pg_policies
                    where schemaname = current_schema() and 'todo_app' = any(roles)$$,
                  'todo_app has policies');
select is_empty($$select p.tablename, p.policyname, e.expression from pg_policies p
                  cross join lateral (values (p.qual), (p.with_check)) e(expression)
                  where p.schemaname = current_schema() and 'todo_app' = any(p.roles)
                    and e.expression is not null
                    and e.expression
                        <> '(user_id = ( SELECT todo_current_user_id() AS todo_current_user_id))'$$,
                'every policy of todo_app reads the user only as (select todo_current_user_id())');
select col_default_is('tasks', 'user_id', 'todo_current_user_id()',
                      'tasks.user_id defaults to todo_current_user_id()');

-- What it answers, as a request does: NULL (nobody) when unset or reset, else the user.
set local role todo_app;
select is(todo_current_user_id(), null, 'unset app.user_id: no user');
set local app.user_id = '';
select is(todo_current_user_id(), null, 'app.user_id reset to '''': no user');
set local app.user_id = 'pgtap:alice';
select is(todo_current_user_id(), 'pgtap:alice', 'app.user_id set: that user');

select * from finish();
rollback;
