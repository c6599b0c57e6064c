-- pgTAP: the policies of revoked_tokens, as the request role todo_app, for a user, another user
-- and nobody. Requests insert and upsert their own revocations and never delete one (0006):
-- expired rows are purged by todo_purge_expired_revocations() alone. Everything is rolled back;
-- fixtures are inserted as todo_app (see tasks.sql for why), under user ids no real user has.
begin;
select plan(16);

select ok((select relrowsecurity from pg_class where oid = 'revoked_tokens'::regclass),
          'revoked_tokens: row-level security is enabled');
select ok((select relforcerowsecurity from pg_class where oid = 'revoked_tokens'::regclass),
          'revoked_tokens: row-level security is forced (the owner is confined too)');
select policies_are('revoked_tokens',
                    array['revoked_tokens_select', 'revoked_tokens_insert', 'revoked_tokens_update',
                          'revoked_tokens_expired_select', 'revoked_tokens_expired_delete'],
                    'revoked_tokens: the request role''s three policies and the purge''s two');

set local role todo_app;
set local app.user_id = 'pgtap:alice';
insert into revoked_tokens (user_id, token_id, expires_at)
values ('pgtap:alice', 'jti-sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', now() + interval '1 hour');
set local app.user_id = 'pgtap:bob';
insert into revoked_tokens (user_id, token_id, expires_at)
values ('pgtap:bob', 'jti-sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', now() + interval '1 hour'),
       ('pgtap:bob', 'jti-sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', now() - interval '1 minute');

-- As alice. No statement below names a user: row-level security alone decides.
set local app.user_id = 'pgtap:alice';
select results_eq('select token_id from revoked_tokens',
                  $$values ('jti-sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa')$$,
                  'alice sees her own revocation and no one else''s');
select is_empty($$update revoked_tokens set expires_at = expires_at + interval '1 day'
                  where token_id = 'jti-sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' returning token_id$$,
                'alice''s UPDATE of bob''s revocation touches no row');
select throws_ok($$delete from revoked_tokens where token_id = 'jti-sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'$$,
                 '42501', 'permission denied for table revoked_tokens',
                 'a request may not DELETE revocations, not even its own');
select throws_ok($$insert into revoked_tokens (user_id, token_id, expires_at)
                   values ('pgtap:bob', 'jti-sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd', now() + interval '1 hour')$$,
                 '42501', 'new row violates row-level security policy for table "revoked_tokens"',
                 'alice cannot record a revocation for bob (WITH CHECK)');
select throws_ok($$update revoked_tokens set user_id = 'pgtap:bob'$$,
                 '42501', 'permission denied for table revoked_tokens',
                 'alice cannot hand her revocation to bob (user_id is not updatable)');
select results_eq($$insert into revoked_tokens (user_id, token_id, expires_at)
                    values ('pgtap:alice', 'jti-sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', now() + interval '2 hours')
                    on conflict (user_id, token_id) do update
                    set expires_at = greatest(revoked_tokens.expires_at, excluded.expires_at)
                    returning token_id$$,
                  $$values ('jti-sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa')$$,
                  'alice can re-revoke her own token (the API''s upsert)');
select cmp_ok(todo_purge_expired_revocations(), '>=', 1::bigint,
              'the purge function, callable by todo_app, deletes expired revocations');

-- As bob: his live revocation is as he left it; his expired one was purged.
set local app.user_id = 'pgtap:bob';
select results_eq($$select token_id, expires_at < now() + interval '2 hours'
                    from revoked_tokens$$,
                  $$values ('jti-sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', true)$$,
                  'bob sees his live revocation, unchanged by alice; the expired one is purged');

-- As nobody: app.user_id reset to '', what a pooled connection reports after a request.
set local app.user_id = '';
select is_empty('select token_id from revoked_tokens', 'without a user no revocation is visible');
select is_empty($$update revoked_tokens set revoked_at = now() returning token_id$$,
                'without a user an UPDATE touches no row');
select throws_ok($$insert into revoked_tokens (user_id, token_id, expires_at)
                   values ('pgtap:alice', 'jti-sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd', now() + interval '1 hour')$$,
                 '42501', 'new row violates row-level security policy for table "revoked_tokens"',
                 'without a user no revocation can be recorded (WITH CHECK)');

-- The purge's own role sees expired rows only, and so reveals nothing that still matters.
reset role;
set local role todo_maintenance;
select is_empty('select token_id from revoked_tokens where expires_at > now()',
                'todo_maintenance sees no revocation that has not expired');
select is_empty($$delete from revoked_tokens where expires_at > now() returning token_id$$,
                'todo_maintenance cannot delete a revocation that has not expired');

select * from finish();
rollback;
