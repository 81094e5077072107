# Type stubs for the native module (checked against it by mypy.stubtest).
from collections.abc import Awaitable
from typing import Final, final

__all__ = [
    "ERROR_CODES",
    "FRESH",
    "LEAD",
    "STALE",
    "Cache",
    "Lease",
    "__version__",
    "after_fork_child",
    "http_answer",
    "http_directives",
    "http_etag",
    "http_has_credentials",
    "http_request_key",
    "http_store",
]

__version__: Final[str]
FRESH: Final[int]
STALE: Final[int]
LEAD: Final[int]
ERROR_CODES: Final[list[str]]

_Value = tuple[int, bytes]
_LookupResult = tuple[int, int | None, bytes | None, Lease | None]

def after_fork_child() -> None: ...
def http_request_key(
    route: str,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    vary: list[tuple[str, str]],
    principal: str | None = None,
) -> str: ...
def http_has_credentials(authorization: str | None, cookie: str | None, credential_cookies: list[str]) -> bool: ...
def http_directives(cache_control: str) -> list[str]: ...
def http_store(
    status: int, headers: list[tuple[str, str]], body: bytes, stored_at: float, ttl: int, private: bool
) -> bytes | None: ...
def http_answer(
    entry: bytes,
    now: float,
    private: bool,
    stale_while_revalidate: int,
    vary: list[str],
    if_none_match: str | None = None,
) -> tuple[int, list[tuple[str, str]], bytes | None, str] | None: ...
def http_etag(body: bytes) -> str: ...

@final
class Lease:
    @property
    def key(self) -> str: ...
    def complete(
        self, data: bytes, format: int, ttl: float | None = None, grace: float = 0.0, tags: list[str] | None = None
    ) -> None: ...
    def acomplete(
        self, data: bytes, format: int, ttl: float | None = None, grace: float = 0.0, tags: list[str] | None = None
    ) -> Awaitable[None]: ...
    def abandon(self, exc: BaseException) -> None: ...

@final
class Cache:
    def __new__(
        cls,
        *,
        namespace: str = ...,
        redis_url: str | None = None,
        cluster: list[str] | None = None,
        l1: bool = True,
        l1_max_bytes: int = ...,
        default_ttl: float | None = ...,
        compress_threshold: int = 4096,
        max_value_bytes: int = ...,
        signing_key: bytes | None = None,
        connect_timeout: float = 1.0,
        op_timeout: float = 0.5,
        tombstone_ttl: float = 60.0,
        wait_timeout: float = 30.0,
        ttl_jitter: float = 0.0,
    ) -> Cache: ...
    @property
    def namespace(self) -> str: ...
    @property
    def has_l2(self) -> bool: ...
    def get_local(self, key: str) -> _Value | None: ...
    def get(self, key: str) -> _Value | None: ...
    def get_many(self, keys: list[str]) -> list[_Value | None]: ...
    def set(
        self,
        key: str,
        data: bytes,
        format: int,
        ttl: float | None = None,
        grace: float = 0.0,
        tags: list[str] | None = None,
    ) -> None: ...
    def set_many(
        self, items: list[tuple[str, bytes, int]], ttl: float | None = None, grace: float = 0.0
    ) -> list[str]: ...
    def add(self, key: str, data: bytes, format: int, ttl: float | None = None, grace: float = 0.0) -> bool: ...
    def delete(self, key: str) -> bool: ...
    def delete_many(self, keys: list[str]) -> int: ...
    def touch(self, key: str, ttl: float | None = None) -> bool: ...
    def incr(self, key: str, delta: int = 1) -> int: ...
    def has_key(self, key: str) -> bool: ...
    def clear(self) -> None: ...
    def close(self) -> None: ...
    def stats(self) -> dict[str, int]: ...
    def metrics_text(self) -> str: ...
    def lookup(
        self,
        key: str,
        allow_stale: bool = False,
        wait_timeout: float | None = None,
        early_refresh: float | None = None,
        refresh_ahead: float | None = None,
    ) -> _LookupResult: ...
    def aget(self, key: str) -> Awaitable[_Value | None]: ...
    def aget_many(self, keys: list[str]) -> Awaitable[list[_Value | None]]: ...
    def aset(
        self,
        key: str,
        data: bytes,
        format: int,
        ttl: float | None = None,
        grace: float = 0.0,
        tags: list[str] | None = None,
    ) -> Awaitable[None]: ...
    def aset_many(
        self, items: list[tuple[str, bytes, int]], ttl: float | None = None, grace: float = 0.0
    ) -> Awaitable[list[str]]: ...
    def aadd(
        self, key: str, data: bytes, format: int, ttl: float | None = None, grace: float = 0.0
    ) -> Awaitable[bool]: ...
    def adelete(self, key: str) -> Awaitable[bool]: ...
    def adelete_many(self, keys: list[str]) -> Awaitable[int]: ...
    def atouch(self, key: str, ttl: float | None = None) -> Awaitable[bool]: ...
    def aincr(self, key: str, delta: int = 1) -> Awaitable[int]: ...
    def ahas_key(self, key: str) -> Awaitable[bool]: ...
    def aclear(self) -> Awaitable[None]: ...
    def alookup(
        self,
        key: str,
        allow_stale: bool = False,
        wait_timeout: float | None = None,
        early_refresh: float | None = None,
        refresh_ahead: float | None = None,
    ) -> Awaitable[_LookupResult]: ...
