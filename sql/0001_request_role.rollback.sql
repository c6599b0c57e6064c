revoke usage on schema public from todo_app;
revoke todo_app from current_user;
-- The role is shared by every database of the cluster that uses todo-api: drop it only when no
-- other database still grants it anything.
do $$
begin
    drop role if exists todo_app;
exception
    when dependent_objects_still_exist then
        raise notice 'role todo_app is still used by another database; kept';
end
$$;
