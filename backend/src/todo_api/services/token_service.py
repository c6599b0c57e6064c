"""Token revocation SQL. One statement per request, like every service; RLS confines each to the
caller's rows and the explicit `user_id` keeps it so even without RLS.

Both statements first call `todo_purge_expired_revocations()` (see sql/0003), which deletes every
user's revocations whose token has expired anyway, so the deny-list stays as small as the set of
tokens that could still be presented.
"""

from __future__ import annotations

from todo_api.db import OneStatementTransaction, Statement
from todo_api.identity import User

# expires_at = exp + the verifier's leeway: until then the token could still be accepted. The sum
# is done by Postgres, whose timestamptz reaches far past Python's year 9999, so even an absurd
# `exp` cannot overflow here.
_REVOKE_ONE = Statement.of("""
insert into revoked_tokens (user_id, token_id, expires_at)
select %(user_id)s, token_id,
       %(expires_at)s::timestamptz + make_interval(secs => %(leeway_seconds)s)
from todo_purge_expired_revocations(), unnest(%(token_ids)s::text[]) as token_id
on conflict (user_id, token_id) do update
    set expires_at = greatest(revoked_tokens.expires_at, excluded.expires_at),
        revoked_at = now()
""")

# now() is the transaction's start, so the very token sending this request is refused from here on.
_REVOKE_ALL = Statement.of("""
insert into user_token_revocations (user_id, revoked_before)
select %(user_id)s, now()
from todo_purge_expired_revocations()
on conflict (user_id) do update
    set revoked_before = greatest(user_token_revocations.revoked_before, excluded.revoked_before)
""")


async def revoke_token(tx: OneStatementTransaction, user: User, *, leeway_seconds: int) -> None:
    """Refuse the token `user` was verified from, under every name it has, until it expires."""
    await tx.run(
        _REVOKE_ONE,
        {
            "user_id": user.id,
            "token_ids": list(user.revocation_ids),
            "expires_at": user.expires_at,
            "leeway_seconds": leeway_seconds,
        },
    )


async def revoke_all_tokens(tx: OneStatementTransaction, user_id: str) -> None:
    """Refuse every token of the user issued (iat) up to now, and every token without iat."""
    await tx.run(_REVOKE_ALL, {"user_id": user_id})
