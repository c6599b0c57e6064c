-- depends: 0009_task_api_json
-- One function says who the request's user is; every policy and the tasks.user_id default call
-- it instead of repeating the expression (graphile/starter's app_public.current_user_id()).
--
-- The body is the expression 0002, 0003 and 0008 wrote into each policy: an unset setting gives
-- NULL (current_setting(..., true)), a reset one '' which nullif makes NULL, and user_id = NULL
-- matches no row. LANGUAGE sql, STABLE, SECURITY INVOKER, without a SET clause and PARALLEL SAFE,
-- so the planner inlines it: the policies' predicates, and so the plans (the user_id index
-- walks), are what they were. The policies keep their (select ...) wrapper, which makes it one
-- InitPlan per statement rather than a call per row. pg_catalog is named in the body so no
-- object on the search_path can stand in for current_setting.

create function todo_current_user_id()
    returns text
    language sql
    stable
    parallel safe
as $$
    select nullif(pg_catalog.current_setting('app.user_id', true), '')
$$;

comment on function todo_current_user_id() is
    'The request''s user: the transaction-local app.user_id set by todo_begin_request, NULL when unset or reset to ''''. Every policy and the tasks.user_id default read the user through it. Inlinable (LANGUAGE sql, STABLE, SECURITY INVOKER, no SET).';

-- Policies and the default are evaluated as todo_app (the request role), which therefore needs
-- EXECUTE; nobody else does.
revoke all on function todo_current_user_id() from public;
grant execute on function todo_current_user_id() to todo_app;

alter table tasks alter column user_id set default todo_current_user_id();

alter policy tasks_select on tasks
    using (user_id = (select todo_current_user_id()));
alter policy tasks_insert on tasks
    with check (user_id = (select todo_current_user_id()));
alter policy tasks_update on tasks
    using (user_id = (select todo_current_user_id()))
    with check (user_id = (select todo_current_user_id()));
alter policy tasks_delete on tasks
    using (user_id = (select todo_current_user_id()));

alter policy revoked_tokens_select on revoked_tokens
    using (user_id = (select todo_current_user_id()));
alter policy revoked_tokens_insert on revoked_tokens
    with check (user_id = (select todo_current_user_id()));
alter policy revoked_tokens_update on revoked_tokens
    using (user_id = (select todo_current_user_id()))
    with check (user_id = (select todo_current_user_id()));

alter policy user_token_revocations_select on user_token_revocations
    using (user_id = (select todo_current_user_id()));
alter policy user_token_revocations_insert on user_token_revocations
    with check (user_id = (select todo_current_user_id()));
alter policy user_token_revocations_update on user_token_revocations
    using (user_id = (select todo_current_user_id()))
    with check (user_id = (select todo_current_user_id()));

alter policy idempotency_keys_select on idempotency_keys
    using (user_id = (select todo_current_user_id()));
alter policy idempotency_keys_insert on idempotency_keys
    with check (user_id = (select todo_current_user_id()));
