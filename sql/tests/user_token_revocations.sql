-- pgTAP: the policies of user_token_revocations (revoke-all markers), as the request role
-- todo_app, for a user, another user and nobody. Requests insert and move forward their own
-- marker; nobody deletes one. Everything is rolled back; fixtures are inserted as todo_app (see
-- tasks.sql for why), under user ids no real user has.
begin;
select plan(14);

select ok((select relrowsecurity from pg_class where oid = 'user_token_revocations'::regclass),
          'user_token_revocations: row-level security is enabled');
select ok((select relforcerowsecurity from pg_class
           where oid = 'user_token_revocations'::regclass),
          'user_token_revocations: row-level security is forced (the owner is confined too)');
select policies_are('user_token_revocations',
                    array['user_token_revocations_select', 'user_token_revocations_insert',
                          'user_token_revocations_update'],
                    'user_token_revocations: select, insert and update policies, nothing else');

set local role todo_app;
set local app.user_id = 'pgtap:alice';
insert into user_token_revocations (user_id, revoked_before)
values ('pgtap:alice', '2026-01-01T00:00:00Z');
set local app.user_id = 'pgtap:bob';
insert into user_token_revocations (user_id, revoked_before)
values ('pgtap:bob', '2026-01-01T00:00:00Z');

-- As alice. No statement below names a user: row-level security alone decides.
set local app.user_id = 'pgtap:alice';
select results_eq('select user_id from user_token_revocations',
                  $$values ('pgtap:alice'::text)$$,
                  'alice sees her own marker and no one else''s');
select is_empty($$update user_token_revocations set revoked_before = now()
                  where user_id <> 'pgtap:alice' returning user_id$$,
                'alice''s UPDATE of bob''s marker touches no row');
select throws_ok('delete from user_token_revocations',
                 '42501', 'permission denied for table user_token_revocations',
                 'a request may not DELETE a revoke-all marker, not even its own');
select throws_ok($$insert into user_token_revocations (user_id, revoked_before)
                   values ('pgtap:carol', now())$$,
                 '42501',
                 'new row violates row-level security policy for table "user_token_revocations"',
                 'alice cannot revoke another user''s tokens (WITH CHECK)');
select throws_ok($$update user_token_revocations set user_id = 'pgtap:carol'$$,
                 '42501', 'permission denied for table user_token_revocations',
                 'alice cannot hand her marker to another user (user_id is not updatable)');
select results_eq($$update user_token_revocations set revoked_before = '2026-06-01T00:00:00Z'
                    returning revoked_before = '2026-06-01T00:00:00Z'$$,
                  $$values (true)$$,
                  'alice can move her own marker forward');

-- As bob: his marker is as he left it.
set local app.user_id = 'pgtap:bob';
select results_eq($$select user_id, revoked_before = '2026-01-01T00:00:00Z'
                    from user_token_revocations$$,
                  $$values ('pgtap:bob'::text, true)$$,
                  'bob sees only his marker, unchanged by alice');

-- As nobody: app.user_id reset to '', what a pooled connection reports after a request.
set local app.user_id = '';
select is_empty('select user_id from user_token_revocations',
                'without a user no marker is visible');
select is_empty('update user_token_revocations set revoked_before = now() returning user_id',
                'without a user an UPDATE touches no row');
select throws_ok($$insert into user_token_revocations (user_id, revoked_before)
                   values ('pgtap:carol', now())$$,
                 '42501',
                 'new row violates row-level security policy for table "user_token_revocations"',
                 'without a user no marker can be created (WITH CHECK)');
select throws_ok($$insert into user_token_revocations (revoked_before) values (now())$$,
                 '42501',
                 'new row violates row-level security policy for table "user_token_revocations"',
                 'without a user, a marker without user_id is refused by WITH CHECK too');

select * from finish();
rollback;
