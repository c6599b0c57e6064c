-- depends: 0005_revocation_token_digest
-- Requests never delete from revoked_tokens: a revocation stays until its token expires, and the
-- expired rows of every user are purged by todo_purge_expired_revocations(), a SECURITY DEFINER
-- function owned by todo_maintenance, whose own grant and policies are unchanged here. The DELETE
-- that 0003 granted to todo_app served nothing but widened what a request may do, so it goes.

revoke delete on revoked_tokens from todo_app;

-- This policy existed only to confine that DELETE; with the privilege gone it would guard nothing
-- and only suggest to a reader that requests may delete revocations.
drop policy revoked_tokens_delete on revoked_tokens;
