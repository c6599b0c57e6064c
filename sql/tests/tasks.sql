-- pgTAP: the policies of tasks, as the request role todo_app, for a user, another user and nobody.
-- Run by `pg_prove -d <db> sql/tests/*.sql` (see sql/README.md); everything is rolled back.
-- Fixture rows are inserted as todo_app with each user set in turn: with FORCE ROW LEVEL SECURITY
-- even the table owner is refused without a policy, and this way the file runs unchanged as the
-- migration role or as a superuser. User ids start with 'pgtap:' so no real user can match them.
begin;
select plan(15);

select ok((select relrowsecurity from pg_class where oid = 'tasks'::regclass),
          'tasks: row-level security is enabled');
select ok((select relforcerowsecurity from pg_class where oid = 'tasks'::regclass),
          'tasks: row-level security is forced (the owner is confined too)');
select policies_are('tasks', array['tasks_select', 'tasks_insert', 'tasks_update', 'tasks_delete'],
                    'tasks: one policy per command, nothing else');

set local role todo_app;
set local app.user_id = 'pgtap:alice';
insert into tasks (title) values ('alice one'), ('alice two');
set local app.user_id = 'pgtap:bob';
insert into tasks (title) values ('bob one');

-- As alice. No statement below names a user: row-level security alone decides.
set local app.user_id = 'pgtap:alice';
select results_eq('select title from tasks order by title',
                  $$values ('alice one'), ('alice two')$$,
                  'alice sees her own tasks and no one else''s');
select is_empty($$update tasks set title = 'taken' where title = 'bob one' returning id$$,
                'alice''s UPDATE of bob''s task touches no row');
select is_empty($$delete from tasks where title = 'bob one' returning id$$,
                'alice''s DELETE of bob''s task touches no row');
select throws_ok($$insert into tasks (user_id, title) values ('pgtap:bob', 'planted')$$,
                 '42501', 'new row violates row-level security policy for table "tasks"',
                 'alice cannot create a task for bob (WITH CHECK)');
select throws_ok($$update tasks set user_id = 'pgtap:bob' where title = 'alice one'$$,
                 '42501', 'permission denied for table tasks',
                 'alice cannot hand her task to bob (user_id is not updatable)');
select results_eq($$update tasks set completed = true where title = 'alice one' returning title$$,
                  $$values ('alice one')$$,
                  'alice can update her own task');
select results_eq($$delete from tasks where title = 'alice two' returning title$$,
                  $$values ('alice two')$$,
                  'alice can delete her own task');

-- As bob: his task is exactly as he left it.
set local app.user_id = 'pgtap:bob';
select results_eq('select title, completed from tasks',
                  $$values ('bob one', false)$$,
                  'bob sees only his task, unchanged by alice');

-- As nobody: app.user_id reset to '', what a pooled connection reports after a request.
set local app.user_id = '';
select is_empty('select id from tasks', 'without a user no task is visible');
select is_empty('update tasks set completed = true returning id',
                'without a user an UPDATE touches no row');
select is_empty('delete from tasks returning id', 'without a user a DELETE touches no row');
select throws_ok($$insert into tasks (user_id, title) values ('pgtap:alice', 'planted')$$,
                 '42501', 'new row violates row-level security policy for table "tasks"',
                 'without a user no task can be created (WITH CHECK)');

select * from finish();
rollback;
