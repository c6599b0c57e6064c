-- Back to the expressions 0002, 0003 and 0008 wrote, before the function can go.
alter policy tasks_select on tasks
    using (user_id = (select nullif(current_setting('app.user_id', true), '')));
alter policy tasks_insert on tasks
    with check (user_id = (select nullif(current_setting('app.user_id', true), '')));
alter policy tasks_update on tasks
    using (user_id = (select nullif(current_setting('app.user_id', true), '')))
    with check (user_id = (select nullif(current_setting('app.user_id', true), '')));
alter policy tasks_delete on tasks
    using (user_id = (select nullif(current_setting('app.user_id', true), '')));

alter policy revoked_tokens_select on revoked_tokens
    using (user_id = (select nullif(current_setting('app.user_id', true), '')));
alter policy revoked_tokens_insert on revoked_tokens
    with check (user_id = (select nullif(current_setting('app.user_id', true), '')));
alter policy revoked_tokens_update on revoked_tokens
    using (user_id = (select nullif(current_setting('app.user_id', true), '')))
    with check (user_id = (select nullif(current_setting('app.user_id', true), '')));

alter policy user_token_revocations_select on user_token_revocations
    using (user_id = (select nullif(current_setting('app.user_id', true), '')));
alter policy user_token_revocations_insert on user_token_revocations
    with check (user_id = (select nullif(current_setting('app.user_id', true), '')));
alter policy user_token_revocations_update on user_token_revocations
    using (user_id = (select nullif(current_setting('app.user_id', true), '')))
    with check (user_id = (select nullif(current_setting('app.user_id', true), '')));

alter policy idempotency_keys_select on idempotency_keys
    using (user_id = (select nullif(current_setting('app.user_id', true), '')));
alter policy idempotency_keys_insert on idempotency_keys
    with check (user_id = (select nullif(current_setting('app.user_id', true), '')));

alter table tasks alter column user_id set default nullif(current_setting('app.user_id', true), '');

drop function todo_current_user_id();
