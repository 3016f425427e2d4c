"""Who is calling the gateway: Entra ID bearer tokens checked against the tenant's signing keys (JWKS),
or, for local use, one static shared token. Either way the result is an `Identity` with the jobs it may
launch, or an `AuthError` whose message never contains the token."""

from __future__ import annotations

import asyncio
import hmac
import math
import threading
import time
from collections.abc import Mapping
from typing import Any

import jwt

from adf_bridge.gateway.policy import Identity
from adf_bridge.gateway.settings import GatewaySettings

LEEWAY_SECONDS = 60  # clock skew between Entra, ADF and this host


class AuthError(Exception):
    """Authentication or identity failure. `status` 401 (who are you?), 403 (known token, unknown caller)
    or 503 (the signing keys cannot be fetched). The message never contains the token."""

    def __init__(self, status: int, reason: str, **who: str | None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.who = who


class KeySet:
    """The tenant's signing keys (JWKS), cached; refetched at most every `min_refresh_seconds` when a
    token names an unknown `kid` (Entra rolls keys), so random kids cannot make us hammer the endpoint.
    Blocking: call it off the event loop."""

    def __init__(self, url: str, *, lifespan: float = 3600.0, min_refresh_seconds: float = 60.0) -> None:
        self._client = jwt.PyJWKClient(
            url, cache_keys=False, cache_jwk_set=True, lifespan=int(lifespan), timeout=5
        )
        self._lock = threading.Lock()
        self._min_refresh = min_refresh_seconds
        self._last_fetch = -math.inf

    def get(self, kid: str) -> jwt.PyJWK | None:
        with self._lock:
            try:
                keys = self._client.get_signing_keys()
                if self._last_fetch == -math.inf:
                    self._last_fetch = time.monotonic()
                found = next((k for k in keys if k.key_id == kid), None)
                if found is None and time.monotonic() - self._last_fetch >= self._min_refresh:
                    self._last_fetch = time.monotonic()
                    keys = self._client.get_signing_keys(refresh=True)
                    found = next((k for k in keys if k.key_id == kid), None)
            except jwt.PyJWKClientConnectionError as error:
                raise AuthError(
                    503, f"cannot fetch the tenant's signing keys: {type(error).__name__}"
                ) from None
            except jwt.PyJWKClientError as error:
                raise AuthError(503, f"the tenant's signing keys are unusable: {error}") from None
            return found


# PyJWT's exception -> what the caller is told (never str(error): keep the wording ours and token-free).
_JWT_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid (nbf/iat in the future)"),
    (jwt.InvalidAudienceError, "token audience is not accepted here"),
    (jwt.InvalidIssuerError, "token issuer is not the configured tenant"),
    (jwt.InvalidSignatureError, "token signature does not verify"),
    (jwt.InvalidAlgorithmError, "token algorithm is not accepted (RS256 only)"),
    (jwt.InvalidIssuedAtError, "token iat is not a valid time"),
)


class EntraAuthenticator:
    """Validates Entra ID access tokens and maps them to an `Identity` through the identity policy."""

    def __init__(self, settings: GatewaySettings, keys: KeySet | None = None) -> None:
        self.settings = settings
        self.keys = keys or KeySet(settings.keys_url)

    async def identify(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise AuthError(401, "malformed token") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg != "RS256":
            # Covers alg "none" and HS256 key confusion before any key is looked at.
            raise AuthError(401, f"token algorithm {str(alg)[:20]!r} is not accepted (RS256 only)")
        if not isinstance(kid, str) or not kid or len(kid) > 200:
            raise AuthError(401, "token has no key id (kid)")
        key = await asyncio.to_thread(self.keys.get, kid)
        if key is None:
            raise AuthError(401, "token signing key (kid) is not one of the tenant's keys")
        try:
            claims = jwt.decode(
                token, key.key, algorithms=["RS256"], audience=list(self.settings.audiences),
                issuer=list(self.settings.issuers), leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "nbf", "iat", "aud", "iss"]},
            )  # fmt: skip
        except jwt.MissingRequiredClaimError as error:
            raise AuthError(401, f"token lacks the {error.claim!r} claim") from None
        except jwt.InvalidTokenError as error:
            reason = next((r for kind, r in _JWT_ERRORS if isinstance(error, kind)), "invalid token")
            raise AuthError(401, reason) from None
        if claims.get("tid", self.settings.tenant_id) != self.settings.tenant_id:
            raise AuthError(401, "token tenant (tid) is not the configured tenant")
        object_id = _claim(claims, "oid")
        app_id = _claim(claims, "azp") or _claim(claims, "appid")
        for rule in self.settings.identities:
            if rule.matches(object_id, app_id):
                return Identity(name=rule.name, jobs=rule.jobs, object_id=object_id, app_id=app_id)
        raise AuthError(403, "this identity is not allowed to call the gateway", oid=object_id, appid=app_id)


def _claim(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value[:100] if isinstance(value, str) else None


class StaticTokenAuthenticator:
    """Local use only: one shared secret, one identity ("static-token") with `MNIST_GATEWAY_STATIC_JOBS`."""

    def __init__(self, settings: GatewaySettings) -> None:
        assert settings.static_token is not None
        self.secret = settings.static_token
        self.identity = Identity(name="static-token", jobs=settings.static_jobs)

    async def identify(self, token: str) -> Identity:
        # Constant time: how long the comparison takes says nothing about how much of the token matched.
        if not hmac.compare_digest(token.encode(), self.secret.get_secret_value().encode()):
            raise AuthError(401, "token does not match the static token")
        return self.identity


Authenticator = EntraAuthenticator | StaticTokenAuthenticator
