drop function todo_begin_request(text, text, timestamptz);
drop table user_token_revocations;
drop table revoked_tokens;
