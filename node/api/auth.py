"""API authentication and authorisation: static API keys and OAuth2/OIDC bearer JWTs.

Clients send ``Authorization: Bearer <JWT or API key>`` or ``X-API-Key: <key>``. API keys are
compared by their SHA-256 (the node keeps no key in memory). JWTs are verified with PyJWT
against the issuer's JWKS (found through OIDC discovery unless ``jwks_url`` is set): signature
with an asymmetric algorithm only, ``iss``, ``aud``, ``exp`` (required), ``nbf``/``iat``.
Roles (``read``, ``review``, ``store``, ``request``, ``admin``) come from the key's config or the token's roles claim.

`AuthMiddleware` enforces the policy for every route, deny by default: only ``/health`` and
``/ready`` (and ``/metrics``, ``/docs`` when configured public) are open. GET needs ``read``,
(WADO-RS out, ``GET /dicom-web/studies/.../series/...``, included), ``POST /api/jobs/{id}/review`` needs ``review``, ``POST /dicom-web/studies[/{study}]`` (STOW-RS
in) needs ``store`` (a sending PACS gets that role and no other), ``POST /api/inference-requests``
needs ``request``, anything else needs ``admin`` (among them ``POST /api/jobs/{id}/rerun`` and
``.../deliveries/rerun``: running a failed job again, re-sending failed deliveries), and ``admin``
may do everything. The verified identity is put in ``request.state.principal``: the review route
records it as the reviewer, whatever the request body says. Every decision is audited.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import ssl
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from prometheus_client import Counter
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from node.api.lockout import FailureLimiter
from node.security import audit as A
from node.security.settings import ROLES, AuthConfig, OidcConfig

log = logging.getLogger(__name__)

AUTH_FAILURES = Counter("lgenode_api_auth_failures_total", "API requests refused (401/403/429)", ["reason"])
AUTH_LOCKOUTS = Counter("lgenode_api_auth_lockouts_total",
                        "Client addresses locked out after too many invalid credentials")

# Asymmetric algorithms only: "none" and HMAC (which a forged token could pair with the public key) never.
ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
MIN_KEY_LENGTH = 16
ALWAYS_PUBLIC = frozenset({"/health", "/ready"})
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
_REVIEW_PATH = re.compile(r"^/api/jobs/[^/]+/review$")
INFERENCE_REQUESTS_PATH = "/api/inference-requests"
_JOB_PATH = re.compile(r"^/api/jobs/([^/]+)(/reviews|/deliveries)?$")
_STOW_PATH = re.compile(r"^/dicom-web/studies(/[^/]+)?/?$")
_WADO_PATH = re.compile(r"^/dicom-web/studies/[^/]+/series/[^/]+(/instances/[^/]+)?/?$")


@dataclass(frozen=True)
class Principal:
    """A verified caller."""

    name: str
    roles: frozenset[str]
    method: str  # api_key, oidc, or anonymous (auth.mode open)
    detail: Mapping[str, Any] = field(default_factory=dict)

    def may(self, role: str) -> bool:
        return "admin" in self.roles or role in self.roles


class AuthError(Exception):
    """Credentials missing or not valid (401)."""

    def __init__(self, reason: str, *, presented: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.presented = presented


class IdentityProviderUnavailable(Exception):
    """The issuer's keys could not be fetched: the token can be neither accepted nor refused (503)."""


def sha256_hex(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Key:
    name: str
    digest: str
    roles: frozenset[str]


class OidcVerifier:
    """Verifies bearer JWTs against an OIDC issuer's JWKS (keys cached, refetched on an unknown kid)."""

    REFRESH_SECONDS = 30.0

    def __init__(self, cfg: OidcConfig) -> None:
        self.cfg = cfg
        self._ssl = ssl.create_default_context(cafile=str(cfg.ca_file)) if cfg.ca_file else None
        self._client: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()
        self._last_refresh = -float("inf")

    def _jwks(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._client is None:
                url = self.cfg.jwks_url or self._discover()
                self._client = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5,
                                               ssl_context=self._ssl)
            return self._client

    def _discover(self) -> str:
        url = self.cfg.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            with urllib.request.urlopen(url, timeout=5, context=self._ssl) as r:  # noqa: S310 (http(s) only, validated)
                doc = json.loads(r.read())
        except (OSError, ValueError) as exc:
            raise IdentityProviderUnavailable(f"OIDC discovery failed: {type(exc).__name__}") from None
        if doc.get("issuer") != self.cfg.issuer or not isinstance(doc.get("jwks_uri"), str):
            # OIDC Discovery 1.0 section 4.3: the document must name the issuer it was fetched for.
            raise IdentityProviderUnavailable("OIDC discovery document does not match the configured issuer")
        return str(doc["jwks_uri"])

    def _signing_key(self, kid: Any) -> jwt.PyJWK:
        """The issuer's key for ``kid`` from the cached key set. An unknown kid refetches the set
        (the issuer may have rotated its keys), at most once per REFRESH_SECONDS, so tokens with
        made-up key ids cannot turn the node into a flood of requests to the issuer."""
        try:
            client = self._jwks()
            for refresh in (False, True):
                if refresh:
                    now = time.monotonic()
                    if now - self._last_refresh < self.REFRESH_SECONDS:
                        break
                    self._last_refresh = now
                keys = [k for k in client.get_jwk_set(refresh=refresh).keys if k.public_key_use in (None, "sig")]
                match = [k for k in keys if k.key_id == kid] if kid is not None else keys[:1] if len(keys) == 1 else []
                if match:
                    return match[0]
        except jwt.PyJWKClientConnectionError:
            raise IdentityProviderUnavailable("cannot fetch the issuer's keys (JWKS)") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"issuer key set unusable: {exc}") from None
        raise AuthError(f"no signing key with kid {kid!r}")

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed token") from None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise AuthError(f"token algorithm {alg!r} not accepted")
        signing_key = self._signing_key(header.get("kid"))
        try:
            claims = jwt.decode(token, signing_key.key, algorithms=[alg], audience=self.cfg.audience,
                                issuer=self.cfg.issuer, leeway=self.cfg.leeway_seconds,
                                options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        name = _claim(claims, self.cfg.username_claim) or claims.get("sub")
        if not isinstance(name, str) or not name:
            raise AuthError(f"token has no {self.cfg.username_claim} or sub claim")
        raw = _claim(claims, self.cfg.roles_claim)
        values = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
        roles = frozenset(r for r in values if isinstance(r, str) and r in ROLES)
        return Principal(name=name[:128], roles=roles, method="oidc", detail={"sub": claims.get("sub")})


def _claim(claims: Mapping[str, Any], dotted: str) -> Any:
    node: Any = claims
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


class Authenticator:
    """Turns presented credentials into a `Principal` (or raises `AuthError`)."""

    def __init__(self, cfg: AuthConfig | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.cfg = cfg or AuthConfig()
        env = os.environ if environ is None else environ
        keys = []
        for i, k in enumerate(self.cfg.api_keys):
            if k.key_env is not None:
                secret = env.get(k.key_env)
                if not secret:
                    raise ValueError(f"api.auth.api_keys[{i}] ({k.name}): environment variable {k.key_env} is not set")
                if len(secret) < MIN_KEY_LENGTH:
                    raise ValueError(f"api.auth.api_keys[{i}] ({k.name}): the key in {k.key_env} is shorter than "
                                     f"{MIN_KEY_LENGTH} characters")
                digest = sha256_hex(secret)
            else:
                assert k.key_sha256 is not None
                digest = k.key_sha256
            keys.append(_Key(k.name, digest, frozenset(k.roles)))
        self._keys = tuple(keys)
        self.oidc = OidcVerifier(self.cfg.oidc) if self.cfg.oidc else None

    @property
    def open(self) -> bool:
        return self.cfg.mode == "open"

    def public_paths(self) -> frozenset[str]:
        paths = set(ALWAYS_PUBLIC)
        if self.cfg.public_metrics:
            paths.add("/metrics")
        if self.cfg.public_docs:
            paths |= DOCS_PATHS
        return frozenset(paths)

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """Verify the request's credentials. Without any: anonymous in open mode, else AuthError."""
        token = _credentials(headers)
        if token is None:
            if self.open:
                return Principal("anonymous", frozenset(ROLES), "anonymous")
            raise AuthError("no credentials", presented=False)
        digest = sha256_hex(token)
        found = None
        for k in self._keys:  # every key compared, in constant time
            if hmac.compare_digest(digest, k.digest):
                found = k
        if found is not None:
            return Principal(found.name, found.roles, "api_key")
        if self.oidc is not None and token.count(".") == 2:
            return self.oidc.verify(token)
        raise AuthError("unknown API key or token")


def _credentials(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise AuthError("Authorization header is not 'Bearer <token>'")
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def required_role(method: str, path: str) -> str:
    if method in ("GET", "HEAD"):
        return "read"
    if method == "POST" and _REVIEW_PATH.match(path):
        return "review"
    if method == "POST" and _STOW_PATH.match(path):
        return "store"
    if method == "POST" and path == INFERENCE_REQUESTS_PATH:
        return "request"
    return "admin"


def _audit_event(method: str, path: str) -> tuple[A.Code, str, list[dict[str, Any]]]:
    """The audit event of an API request: reads of one job are accesses, other reads queries."""
    m = _JOB_PATH.match(path)
    if method == "POST" and _STOW_PATH.match(path):
        return A.INSTANCES_TRANSFERRED, "C", []  # as the SCP's record of an association
    if method == "POST" and _REVIEW_PATH.match(path):
        return A.INSTANCES_ACCESSED, "U", []
    if m and method in ("GET", "HEAD"):
        return A.INSTANCES_ACCESSED, "R", [A.job(m.group(1))]
    if method in ("GET", "HEAD") and _WADO_PATH.match(path):
        return A.INSTANCES_TRANSFERRED, "R", []  # WADO-RS: instances sent to the caller
    if method in ("GET", "HEAD"):
        return A.QUERY, "E", []
    return A.INSTANCES_ACCESSED, "U" if method in ("PUT", "PATCH", "POST") else "D" if method == "DELETE" else "E", []


class AuthMiddleware:
    """ASGI middleware: authenticate, authorise by role, audit (see the module docstring)."""

    NOT_AUDITED = frozenset({"/metrics"}) | DOCS_PATHS  # scrapes and docs: no patient-related data

    def __init__(self, app: ASGIApp, authenticator: Authenticator, audit: A.AuditLog) -> None:
        self.app = app
        self.auth = authenticator
        self.audit = audit
        self.public = authenticator.public_paths()
        self.limiter = FailureLimiter(authenticator.cfg.lockout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.public:
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        client = scope.get("client")
        address = client[0] if client else None
        headers = Headers(scope=scope)
        wait = self.limiter.locked(address)
        if wait > 0:  # refused before looking at the credentials: guessing gains nothing
            AUTH_FAILURES.labels("locked_out").inc()
            await _json(send, 429, {"detail": "too many invalid credentials from this address",
                                    "retry_after_seconds": int(wait) + 1}, {"retry-after": str(int(wait) + 1)})
            return
        try:
            # JWT verification may fetch the issuer's keys: not on the event loop.
            principal = await run_in_threadpool(self.auth.authenticate, headers)
        except AuthError as exc:
            if exc.presented and self.limiter.failure(address):
                self._lock_out(scope, address)
            await self._deny(scope, send, 401, exc.reason, address, None, presented=exc.presented)
            return
        except IdentityProviderUnavailable as exc:
            log.error("API authentication unavailable", extra={"reason": str(exc)})
            await _json(send, 503, {"detail": f"authentication unavailable: {exc}"})
            return
        self.limiter.success(address)
        role = required_role(method, path)
        if not principal.may(role):
            await self._deny(scope, send, 403, f"role {role!r} required", address, principal)
            return
        state = scope.setdefault("state", {})
        state["principal"] = principal
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if path not in self.NOT_AUDITED:
                self._audit_request(scope, principal, address, status["code"], state)

    def _lock_out(self, scope: Scope, address: str | None) -> None:
        cfg = self.limiter.cfg
        AUTH_LOCKOUTS.inc()
        reason = (f"{cfg.max_failures} invalid credentials within {cfg.window_seconds:g} s: address locked out "
                  f"for {cfg.lockout_seconds:g} s")
        log.warning("API client locked out", extra={"peer": address, "reason": reason})
        self.audit.record(A.SECURITY_ALERT, action="E", outcome=A.SERIOUS_FAILURE, types=[A.LOGIN],
                          participants=[A.participant("unknown", requestor=True, address=address)],
                          objects=[A.query(f"{scope['method']} {scope['path']}")], description=reason,
                          http_status=429)

    async def _deny(self, scope: Scope, send: Send, code: int, reason: str, address: str | None,
                    principal: Principal | None, presented: bool = True) -> None:
        AUTH_FAILURES.labels("forbidden" if code == 403 else "missing" if not presented else "invalid").inc()
        log.warning("API request refused", extra={"status": code, "reason": reason, "peer": address,
                                                   "method": scope["method"], "path": scope["path"],
                                                   "user": principal.name if principal else None})
        who = [A.participant(principal.name if principal else "unknown", requestor=True, address=address,
                             alternative=principal.method if principal else None)]
        self.audit.record(A.SECURITY_ALERT, action="E", outcome=A.MINOR_FAILURE,
                          types=[A.USE_OF_RESTRICTED_FUNCTION if code == 403 else A.LOGIN],
                          participants=who, objects=[A.query(f"{scope['method']} {scope['path']}")],
                          description=reason, http_status=code)
        error = "insufficient_scope" if code == 403 else "invalid_token" if presented else None
        challenge = 'Bearer realm="lgenode"' + (f', error="{error}"' if error else "")
        await _json(send, code, {"detail": "not authorised" if code == 403 else "not authenticated",
                                 "reason": reason}, {"www-authenticate": challenge})

    def _audit_request(self, scope: Scope, principal: Principal, address: str | None, code: int,
                       state: Mapping[str, Any]) -> None:
        method, path = scope["method"], scope["path"]
        event, action, objects = _audit_event(method, path)
        objects = list(state.get("audit_objects", objects))  # a route may name what it touched
        qs = scope.get("query_string", b"").decode("latin-1")
        objects.append(A.query(f"{method} {path}" + (f"?{qs}" if qs else "")))
        outcome = A.SUCCESS if code < 400 else A.MINOR_FAILURE if code < 500 else A.SERIOUS_FAILURE
        # A route may lower it (STOW-RS: 202, some instances refused).
        outcome = max(outcome, int(state.get("audit_outcome", outcome)))
        transfer = event == A.INSTANCES_TRANSFERRED
        # STOW-RS (action C): the caller sends, we receive; WADO-RS (action R): the other way round.
        caller_role, our_role = ((A.ROLE_DESTINATION, A.ROLE_SOURCE) if action == "R" else
                                 (A.ROLE_SOURCE, A.ROLE_DESTINATION)) if transfer else (None, A.ROLE_APPLICATION)
        self.audit.record(event, action=action, outcome=outcome,
                          participants=[A.participant(principal.name, requestor=True, address=address,
                                                      alternative=principal.method, role=caller_role),
                                        A.participant(self.audit.source["AuditSourceID"], requestor=False,
                                                      role=our_role)],
                          objects=objects, http_status=code, roles=sorted(principal.roles),
                          **dict(state.get("audit_detail", {})))


def document_security(app: Any) -> None:
    """Declare the credentials in the OpenAPI schema, so /docs offers "Authorize" (bearer token
    or X-API-Key) and generated clients know what to send."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT or API key",
                           "description": "`Authorization: Bearer <token>`: an OIDC access token (JWT, verified "
                                          "against the issuer's JWKS: asymmetric signature, iss, aud, exp; roles "
                                          "from `api.auth.oidc.roles_claim`) or a static API key "
                                          "(`api.auth.api_keys`, roles from its config)."},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                           "description": "A static API key (`api.auth.api_keys`); the same keys as in the "
                                          "bearer header."},
            }
            schema.setdefault("info", {})["description"] = schema["info"].get("description", "") + (
                " Every route except /health and /ready needs credentials (a bearer token or an API key) "
                "with a role: `read` for GET, `review` for review decisions, `store` for STOW-RS in, "
                "`request` for inference requests, `admin` for everything; 401 without valid credentials, "
                "403 without the role.")
            schema["security"] = [{"bearer": []}, {"apiKey": []}]
            for path in ALWAYS_PUBLIC:
                for op in schema.get("paths", {}).get(path, {}).values():
                    op["security"] = []
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


async def _json(send: Send, code: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> None:
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": code, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


__all__ = ["document_security", "Principal", "AuthError", "IdentityProviderUnavailable", "Authenticator", "AuthMiddleware", "OidcVerifier",
           "required_role", "sha256_hex", "ALLOWED_ALGORITHMS"]
