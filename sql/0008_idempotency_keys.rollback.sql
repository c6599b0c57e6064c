drop function todo_purge_expired_idempotency_keys();
drop table idempotency_keys;
