-- pgTAP: the policies of idempotency_keys (Idempotency-Key on task creation), as the request role
-- todo_app, for a user, another user and nobody. Requests record and read their own keys; nobody
-- can probe, change or delete another user's (expired keys are purged by
-- todo_purge_expired_idempotency_keys as todo_maintenance). Everything is rolled back; fixtures
-- are inserted as todo_app (see tasks.sql for why), under user ids no real user has.
begin;
select plan(14);

select ok((select relrowsecurity from pg_class where oid = 'idempotency_keys'::regclass),
          'idempotency_keys: row-level security is enabled');
select ok((select relforcerowsecurity from pg_class where oid = 'idempotency_keys'::regclass),
          'idempotency_keys: row-level security is forced (the owner is confined too)');
select policies_are('idempotency_keys',
                    array['idempotency_keys_select', 'idempotency_keys_insert',
                          'idempotency_keys_expired_select', 'idempotency_keys_expired_delete'],
                    'idempotency_keys: request select/insert, housekeeping select/delete of expired rows');

set local role todo_app;
set local app.user_id = 'pgtap:alice';
insert into idempotency_keys (user_id, key, fingerprint, task_id, response)
values ('pgtap:alice', 'shared-key', repeat('a', 64), 1, '{}');
set local app.user_id = 'pgtap:bob';
insert into idempotency_keys (user_id, key, fingerprint, task_id, response)
values ('pgtap:bob', 'shared-key', repeat('b', 64), 2, '{}');

-- As alice. No statement below names a user: row-level security alone decides.
set local app.user_id = 'pgtap:alice';
select results_eq('select user_id, fingerprint from idempotency_keys',
                  $$values ('pgtap:alice'::text, repeat('a', 64))$$,
                  'alice sees her own key and not bob''s, though they share the key text');
select throws_ok('update idempotency_keys set response = ''[]''',
                 '42501', 'permission denied for table idempotency_keys',
                 'a request may not change a recorded key, not even its own');
select throws_ok('delete from idempotency_keys',
                 '42501', 'permission denied for table idempotency_keys',
                 'a request may not delete a key, not even its own');
select throws_ok($$insert into idempotency_keys (user_id, key, fingerprint, task_id, response)
                   values ('pgtap:bob', 'probe', repeat('c', 64), 3, '{}')$$,
                 '42501',
                 'new row violates row-level security policy for table "idempotency_keys"',
                 'alice cannot record a key for another user (WITH CHECK)');
select throws_ok($$insert into idempotency_keys (user_id, key, fingerprint, task_id, response)
                   values ('pgtap:alice', 'shared-key', repeat('c', 64), 3, '{}')$$,
                 '23505', null,
                 'a key is recorded once per user (primary key)');
select is(todo_purge_expired_idempotency_keys(), 0::bigint,
          'the purge (callable by todo_app) leaves keys that have not expired');

-- As bob: his key is as he left it.
set local app.user_id = 'pgtap:bob';
select results_eq('select user_id, fingerprint from idempotency_keys',
                  $$values ('pgtap:bob'::text, repeat('b', 64))$$,
                  'bob sees only his key');

-- As nobody: app.user_id reset to '', what a pooled connection reports after a request.
set local app.user_id = '';
select is_empty('select key from idempotency_keys', 'without a user no key is visible');
select throws_ok($$insert into idempotency_keys (user_id, key, fingerprint, task_id, response)
                   values ('pgtap:carol', 'k', repeat('c', 64), 3, '{}')$$,
                 '42501',
                 'new row violates row-level security policy for table "idempotency_keys"',
                 'without a user no key can be recorded (WITH CHECK)');
select throws_ok($$insert into idempotency_keys (key, fingerprint, task_id, response)
                   values ('k', repeat('c', 64), 3, '{}')$$,
                 '42501',
                 'new row violates row-level security policy for table "idempotency_keys"',
                 'without a user, a key without user_id is refused too');
select throws_ok($$insert into idempotency_keys (user_id, key, fingerprint, task_id, response,
                                                  expires_at)
                   values ('', 'k', repeat('c', 64), 3, '{}', now())$$,
                 '42501', 'permission denied for table idempotency_keys',
                 'a request cannot choose when a key expires (expires_at is not insertable)');

select * from finish();
rollback;
