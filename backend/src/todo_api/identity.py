"""Who is calling: the verified user behind a request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class User:
    """A caller whose token was verified (T002).

    `token_id` names the presented token for revocation: `jti-sha256:<hex>` of its `jti`, or
    `sha256:<hex>` of the whole (canonical) token when it has no `jti`. `revocation_ids` holds
    `token_id` and every other name the same signed token can be presented under (the twin of a
    malleable ES256 signature); revoking the token records all of them. `issued_at` is the
    token's `iat`, when it has one.
    """

    id: str
    email: str | None
    name: str | None
    token_id: str
    revocation_ids: tuple[str, ...]
    issued_at: datetime | None
    expires_at: datetime
