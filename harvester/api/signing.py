"""ACS3-HMAC-SHA256 request signing for the ROA-style EMR Serverless Spark API (pure).

Every header that goes on the wire is signed. The canonical query string built here is
also the query string that is sent, so what is signed is exactly what the server sees.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True)
class Credentials:
    """An AccessKey pair, with the STS token when the pair is temporary."""

    access_key_id: str
    access_key_secret: str
    security_token: str | None = None

    def __repr__(self) -> str:
        # Dataclass repr would print the secret into any log or traceback that shows us.
        return f"Credentials(access_key_id={self.access_key_id!r}, access_key_secret='***')"


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as the service expects it (space is %20, ~ is kept)."""
    return quote(value, safe="~")


def canonical_query(query: Mapping[str, str]) -> str:
    """Keys sorted by code point, values percent-encoded, joined by '&'."""
    return "&".join(f"{key}={percent_encode(query[key])}" for key in sorted(query))


def canonical_request(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body_sha256: str,
) -> tuple[str, str]:
    """Return (canonical request, signed header names) for the given request parts."""
    lowered = {name.lower(): value.strip() for name, value in headers.items()}
    names = sorted(lowered)
    canonical_headers = "".join(f"{name}:{lowered[name]}\n" for name in names)
    signed_headers = ";".join(names)
    request = "\n".join(
        [
            method.upper(),
            path,
            canonical_query(query),
            canonical_headers,
            signed_headers,
            body_sha256,
        ]
    )
    return request, signed_headers


def signature(access_key_secret: str, request: str) -> str:
    """Hex HMAC-SHA256 over the string to sign derived from a canonical request."""
    string_to_sign = f"{ALGORITHM}\n{hashlib.sha256(request.encode()).hexdigest()}"
    # hmac.digest: OpenSSL's one-shot HMAC, without building an HMAC object per request.
    return hmac.digest(access_key_secret.encode(), string_to_sign.encode(), "sha256").hex()


def authorization(
    credentials: Credentials,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body_sha256: str = EMPTY_BODY_SHA256,
) -> str:
    """The Authorization header value for a request whose other headers are final."""
    request, signed_headers = canonical_request(method, path, query, headers, body_sha256)
    return (
        f"{ALGORITHM} Credential={credentials.access_key_id},"
        f"SignedHeaders={signed_headers},"
        f"Signature={signature(credentials.access_key_secret, request)}"
    )


def sign_headers(
    credentials: Credentials,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    *,
    action: str,
    version: str,
    date: str,
    nonce: str,
    body: bytes = b"",
) -> dict[str, str]:
    """Add the x-acs-* headers and Authorization to `headers` (which must include host)."""
    body_sha256 = hashlib.sha256(body).hexdigest() if body else EMPTY_BODY_SHA256
    signed = {name.lower(): value for name, value in headers.items()}
    signed.update(
        {
            "x-acs-action": action,
            "x-acs-version": version,
            "x-acs-date": date,
            "x-acs-signature-nonce": nonce,
            "x-acs-content-sha256": body_sha256,
        }
    )
    if credentials.security_token:
        signed["x-acs-security-token"] = credentials.security_token
        signed["x-acs-accesskey-id"] = credentials.access_key_id
    signed["authorization"] = authorization(credentials, method, path, query, signed, body_sha256)
    return signed


@dataclass(frozen=True, slots=True)
class ParsedAuthorization:
    """The parts of an ACS3 Authorization header, as a verifier needs them."""

    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization | None:
    """Split an Authorization header; None when it is not a well-formed ACS3 one."""
    algorithm, _, rest = value.partition(" ")
    if algorithm != ALGORITHM:
        return None
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            return None
        parts[key] = val
    try:
        return ParsedAuthorization(
            access_key_id=parts["Credential"],
            signed_headers=tuple(parts["SignedHeaders"].split(";")),
            signature=parts["Signature"],
        )
    except KeyError:
        return None


def verify(
    secret_for: Mapping[str, str],
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes = b"",
) -> str | None:
    """Check a received request's signature; return None if valid, else the reason.

    Used by the simulator; `secret_for` maps AccessKey ids to secrets.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    parsed = parse_authorization(lowered.get("authorization", ""))
    if parsed is None:
        return "missing or malformed Authorization header"
    secret = secret_for.get(parsed.access_key_id)
    if secret is None:
        return "unknown AccessKey id"
    if "host" not in parsed.signed_headers or "x-acs-date" not in parsed.signed_headers:
        return "host and x-acs-date must be signed"
    if any(name not in lowered for name in parsed.signed_headers):
        return "a signed header is missing from the request"
    body_sha256 = hashlib.sha256(body).hexdigest()
    if lowered.get("x-acs-content-sha256", body_sha256) != body_sha256:
        return "x-acs-content-sha256 does not match the body"
    signed = {name: lowered[name] for name in parsed.signed_headers}
    request, _ = canonical_request(method, path, query, signed, body_sha256)
    # Bytes, because compare_digest refuses non-ASCII str and a client may send anything.
    if not hmac.compare_digest(signature(secret, request).encode(), parsed.signature.encode()):
        return "signature does not match"
    return None
