"""HTTP caching rules for the web integrations.

Thin wrappers over the core's implementation (``stratacache::http``), which
the Node middleware uses too, so Python and Node agree on keys, the stored
response format, ETags and what may be stored. See docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from . import _native

__all__ = [
    "DEFAULT_CREDENTIAL_COOKIES",
    "Answer",
    "answer",
    "directives",
    "etag_for",
    "has_credentials",
    "request_key",
    "store",
]

#: Cookie names that identify a logged-in user (Django, Flask, Express,
#: Rails, Laravel sessions). Requests carrying one are never answered from a
#: shared entry.
DEFAULT_CREDENTIAL_COOKIES: tuple[str, ...] = ("sessionid", "session", "connect.sid", "_session", "remember_token")


class Answer(NamedTuple):
    """How to answer from a stored entry."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes | None  # None for a 304
    etag: str


def etag_for(body: bytes) -> str:
    """The strong ETag of a body (stable across processes and languages)."""
    return _native.http_etag(body)


def request_key(
    *,
    route: str,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    vary: Mapping[str, str],
    principal: str | None,
) -> str:
    """The cache key of a request (hashed; the principal never appears in clear)."""
    return _native.http_request_key(route, method, path, list(query), list(vary.items()), principal)


def has_credentials(authorization: str | None, cookie: str | None, credential_cookies: Sequence[str]) -> bool:
    """Whether the request identifies a user."""
    return _native.http_has_credentials(authorization, cookie, list(credential_cookies))


def directives(cache_control: str | None) -> list[str]:
    """Lower-cased directive names of a ``Cache-Control`` header."""
    return _native.http_directives(cache_control or "")


def store(
    status: int, headers: Iterable[tuple[str, str]], body: bytes, stored_at: float, ttl: int, private: bool
) -> bytes | None:
    """The entry to store for a response, or ``None`` when it may not be stored."""
    return _native.http_store(status, list(headers), body, stored_at, ttl, private)


def answer(
    entry: bytes, now: float, private: bool, stale_while_revalidate: int, vary: Sequence[str], if_none_match: str | None
) -> Answer | None:
    """How to answer a request from stored entry bytes (``None`` if malformed)."""
    r = _native.http_answer(entry, now, private, stale_while_revalidate, list(vary), if_none_match)
    return None if r is None else Answer(*r)
