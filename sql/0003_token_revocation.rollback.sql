drop function todo_purge_expired_revocations();
drop function todo_begin_request(text, text, timestamptz, text);
drop table user_token_revocations;
drop table revoked_tokens;
revoke usage on schema public from todo_maintenance;
revoke todo_maintenance from current_user;
-- Roles are cluster-wide: keep todo_maintenance while another database still uses it.
do $$
begin
    drop role if exists todo_maintenance;
exception
    when dependent_objects_still_exist then
        raise notice 'role todo_maintenance is still used by another database; kept';
end
$$;
