"""Two real APIs (FastAPI under uvicorn) that trust only access tokens issued for their own audience.

Each verifies the bearer JWT against the provider's published keys (joserfc), its issuer and expiry,
and accepts it only when ``aud`` is its own resource indicator (RFC 8707 / RFC 9068). Each records
every bearer token it received, accepted or not, so tests can tell which API saw which token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

ORDERS = "https://orders.example.test/"
BILLING = "https://billing.example.test/"


@dataclass
class ResourceServer:
    """What one API received: every bearer token, and whether there were calls without any."""

    audience: str
    issuer: str
    keys: KeySet
    tokens: list[str] = field(default_factory=list)
    anonymous_calls: int = 0
    refuse_next: int = 0  # answer this many calls with 401 whatever their token (a revoked token)

    def verify(self, token: str) -> dict[str, Any] | None:
        """The token's claims when it is for this API, else None."""
        try:
            claims = jwt.decode(token, self.keys, algorithms=["RS256"]).claims
        except (JoseError, ValueError):
            return None
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if claims.get("iss") != self.issuer or self.audience not in audiences:
            return None
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= time.time():
            return None
        return claims

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/me")
        async def me(request: Request) -> JSONResponse:
            header = request.headers.get("authorization", "")
            if not header:
                self.anonymous_calls += 1
                return JSONResponse({"api": self.audience, "anonymous": True})
            token = header.removeprefix("Bearer ")
            self.tokens.append(token)
            claims = self.verify(token)
            if self.refuse_next > 0:
                self.refuse_next -= 1
                claims = None
            if claims is None:
                return JSONResponse({"error": "invalid_token"}, status_code=401)
            return JSONResponse(
                {
                    "api": self.audience,
                    "sub": claims["sub"],
                    "aud": claims["aud"],
                    "scope": claims.get("scope"),
                }
            )

        return app
