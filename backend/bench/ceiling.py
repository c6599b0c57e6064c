"""The in-run ceiling: a Starlette app that only verifies the Bearer token and returns a fixed body.

It uses the service's own `bearer_token` and `TokenVerifier`, and is served exactly like the API
(uvicorn, uvloop, httptools, one worker on the same core), so the API's figures divided by its
figures say what share of the physical limit the service reaches. As the issue defines it, the
ceiling verifies every token in full: its verifier's cache of verified tokens is off
(CEILING_TOKEN_CACHE=1 turns it on, to see the cached figure).

    uvicorn --factory bench.ceiling:create_app  (BETTER_AUTH_SECRET from the environment)
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from todo_api.config import Settings
from todo_api.dependencies import bearer_token
from todo_api.errors import ApiError, problem_response
from todo_api.security import TokenVerifier

FIXED_BODY = b'{"id":1,"title":"ceiling","completed":false}'


def create_app() -> Starlette:
    settings = Settings()  # type: ignore[call-arg]  # from the environment, like the API
    cached = os.environ.get("CEILING_TOKEN_CACHE") == "1"
    verifier = TokenVerifier(settings) if cached else TokenVerifier(settings, cache_entries=0)

    async def verified(request: Request) -> Response:
        try:
            await verifier.verify(bearer_token(request))
        except ApiError as exc:
            return problem_response(exc, "ceiling")
        return Response(FIXED_BODY, media_type="application/json")

    return Starlette(routes=[Route("/ceiling", verified)])
