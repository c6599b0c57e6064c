"""Token verification, key sets and revocation identifiers."""

from todo_api.security.verifier import TokenVerifier

__all__ = ["TokenVerifier"]
