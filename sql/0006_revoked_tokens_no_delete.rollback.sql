-- Restores what 0003 created: the policy first, so the privilege is never granted unguarded.
create policy revoked_tokens_delete on revoked_tokens for delete to todo_app
    using (user_id = (select nullif(current_setting('app.user_id', true), '')));

comment on policy revoked_tokens_delete on revoked_tokens is 'A request may delete only its own user''s revocations (the API never does; expired rows of every user are purged by todo_purge_expired_revocations).';

grant delete on revoked_tokens to todo_app;
