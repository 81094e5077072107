"""HTTP caching semantics shared by the web integrations (FastAPI today).

Framework-free: cache keys for requests, the stored response format,
strong ETags, ``Cache-Control`` parsing, and the rules that decide what may
be cached and served to whom.

Stored response format (``FORMAT_RAW`` entries, version 1, big-endian)::

    b"SCH1" | u16 status | f64 stored_at (unix s) | u32 ttl (s) | u32 n
    | n bytes of UTF-8 JSON: [[header, value], ...] | body

The ETag is part of the stored headers: computed once from the body
(SHA-256), so every worker and every restart agrees on it.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_CREDENTIAL_COOKIES",
    "CachedResponse",
    "cache_control",
    "etag_for",
    "etag_matches",
    "request_key",
]

_MAGIC = b"SCH1"
_HEAD = struct.Struct(">4sHdII")

#: Cookie names that identify a logged-in user (Django, Flask, Express,
#: Rails/Starlette sessions). Requests carrying one are never answered
#: from a shared entry.
DEFAULT_CREDENTIAL_COOKIES: tuple[str, ...] = ("sessionid", "session", "connect.sid", "_session", "remember_token")

# Headers never stored: hop-by-hop, per-response, or per-user.
_UNSTORED = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "set-cookie",
        "date",
        "age",
        "x-cache",
        "etag",
        "cache-control",
        "vary",
    }
)


@dataclass(frozen=True)
class CachedResponse:
    """A rendered response as stored."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    etag: str
    stored_at: float
    ttl: int

    def encode(self) -> bytes:
        hdrs = json.dumps([[k, v] for k, v in self.headers] + [["etag", self.etag]]).encode()
        return _HEAD.pack(_MAGIC, self.status, self.stored_at, self.ttl, len(hdrs)) + hdrs + self.body

    @classmethod
    def decode(cls, data: bytes) -> CachedResponse | None:
        """Parse a stored entry; ``None`` for anything malformed (a miss)."""
        try:
            magic, status, stored_at, ttl, n = _HEAD.unpack_from(data)
            if magic != _MAGIC:
                return None
            start = _HEAD.size
            pairs = json.loads(data[start : start + n])
            body = bytes(data[start + n :])
            headers = [(str(k), str(v)) for k, v in pairs]
        except (struct.error, ValueError, TypeError):
            return None
        etag = next((v for k, v in headers if k == "etag"), etag_for(body))
        return cls(status, [(k, v) for k, v in headers if k != "etag"], body, etag, stored_at, ttl)

    @classmethod
    def build(
        cls, status: int, headers: Iterable[tuple[str, str]], body: bytes, stored_at: float, ttl: int
    ) -> CachedResponse:
        kept = [(k.lower(), v) for k, v in headers if k.lower() not in _UNSTORED]
        return cls(status, kept, body, etag_for(body), stored_at, ttl)


def etag_for(body: bytes) -> str:
    """A strong ETag derived from the body alone (stable across processes)."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 ``If-None-Match`` (weak comparison, ``*`` matches)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    want = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == want for tag in if_none_match.split(","))


def cache_control(value: str | None) -> dict[str, str | None]:
    """Parse a ``Cache-Control`` header into ``{directive: argument}``."""
    out: dict[str, str | None] = {}
    for part in (value or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, _, arg = part.partition("=")
        out[name.strip().lower()] = arg.strip().strip('"') or None
    return out


def has_credentials(headers: Mapping[str, str], cookies: Mapping[str, str], credential_cookies: Sequence[str]) -> bool:
    """Whether the request identifies a user (never to be served a shared entry)."""
    if headers.get("authorization"):
        return True
    return any(name in cookies for name in credential_cookies)


def request_key(
    *,
    route: str,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    vary: Mapping[str, str],
    principal: str | None,
) -> str:
    """The cache key of a request: route, path, sorted query, varied headers, principal.

    Hashed, so any URL makes a short, valid key, and the principal never
    appears in Redis in clear.
    """
    h = hashlib.sha256()
    for part in (route, method.upper(), path):
        h.update(part.encode())
        h.update(b"\x00")
    for k, v in sorted(query):
        h.update(f"q:{k}={v}".encode())
        h.update(b"\x00")
    for k in sorted(vary):
        h.update(f"h:{k.lower()}={vary[k]}".encode())
        h.update(b"\x00")
    if principal is not None:
        h.update(b"p:" + principal.encode())
    scope = "private" if principal is not None else "public"
    return f"http:{scope}:{h.hexdigest()}"
