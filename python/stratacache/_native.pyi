# Type stubs for the native module (checked against it by mypy.stubtest).
from collections.abc import Awaitable, Callable
from typing import Any, Final, final

from stratacache.feed import EventStats, FeedStats

__all__ = [
    "BUSY",
    "ERROR_CODES",
    "FRESH",
    "HTTP_CONDITIONAL_HEADERS",
    "HTTP_REFRESH_HEADER",
    "L2_ERROR_CODES",
    "LEAD",
    "NOTHING",
    "SERVED_LOADED",
    "SERVED_STALE",
    "STALE",
    "UNCACHED",
    "VALUE",
    "Cache",
    "Deps",
    "EventListener",
    "HttpExchange",
    "HttpRoute",
    "HttpSettle",
    "Lease",
    "PgListener",
    "Policy",
    "__version__",
    "_at_exit",
    "after_fork_child",
    "fragment_key",
    "listen_config",
    "metrics_text",
    "nearest_name",
    "note_served",
    "redacted_url",
    "take_served",
]

__version__: Final[str]
FRESH: Final[int]
STALE: Final[int]
LEAD: Final[int]
BUSY: Final[int]
VALUE: Final[int]
NOTHING: Final[int]
UNCACHED: Final[int]
SERVED_LOADED: Final[int]
SERVED_STALE: Final[int]
ERROR_CODES: Final[list[str]]
L2_ERROR_CODES: Final[list[str]]
HTTP_REFRESH_HEADER: Final[str]
HTTP_CONDITIONAL_HEADERS: Final[list[str]]

_Value = tuple[int, bytes]
_Read = tuple[int, bytes, int]
_LookupResult = tuple[int, int | None, bytes | None, Lease | None, int]

def after_fork_child() -> None: ...
def fragment_key(name: str, vary_on: list[str]) -> str: ...
def metrics_text(caches: list[Cache]) -> str: ...
def nearest_name(name: str, known: list[str]) -> str | None: ...
def redacted_url(url: str) -> str: ...
def listen_config(text: str) -> str: ...
def _at_exit() -> None: ...
def take_served() -> tuple[str, str | None] | None: ...
def note_served(code: int) -> None: ...

_Headers = list[tuple[str, str]]
_Answer = tuple[int, _Headers, bytes | None]

@final
class HttpRoute:
    def __new__(
        cls,
        *,
        ttl: float,
        stale_while_revalidate: float,
        stale_if_error: float,
        vary: list[str],
        shared_cookies: list[str],
        private_headers: list[str],
        keyed: bool,
        request_directives: str,
        x_cache: bool,
        scope: str,
        edge_ttl: float = 0.0,
        edge_tag_header: str | None = None,
    ) -> HttpRoute: ...
    @property
    def has_edge_tags(self) -> bool: ...
    @property
    def ttl(self) -> float: ...
    @property
    def grace(self) -> float: ...
    def exchange(self, method: str, path: str, query: _Headers, headers: _Headers) -> HttpExchange: ...

@final
class PgListener:
    def __new__(
        cls,
        cache: Cache,
        url: str,
        tables: list[tuple[str, list[str] | None]],
        *,
        slot: str | None = None,
        publication: str | None = None,
        poll_interval: float | None = None,
        lease_ttl: float | None = None,
    ) -> PgListener: ...
    def stats(self) -> FeedStats: ...
    def stop(self) -> None: ...

_TableRules = list[tuple[str, list[str] | None, list[str] | None]]

@final
class EventListener:
    @staticmethod
    def nats(
        cache: Cache,
        url: str,
        *,
        stream: str | None = None,
        subjects: list[str] | None = None,
        durable: str | None = None,
        tables: _TableRules = ...,
    ) -> EventListener: ...
    @staticmethod
    def amqp(
        cache: Cache,
        url: str,
        *,
        queue: str | None = None,
        bind: tuple[str, str] | None = None,
        tables: _TableRules = ...,
    ) -> EventListener: ...
    def stats(self) -> EventStats: ...
    def stop(self) -> None: ...

@final
class HttpSettle:
    @property
    def use_stale(self) -> bool: ...
    @property
    def writes(self) -> list[tuple[str, bytes]]: ...
    @property
    def complete(self) -> bytes | None: ...
    @property
    def invalidate(self) -> list[str]: ...
    @property
    def answer(self) -> _Answer | None: ...
    @property
    def bypass(self) -> str | None: ...
    @property
    def ttl(self) -> float: ...
    @property
    def grace(self) -> float: ...

@final
class HttpExchange:
    def start(self) -> tuple[str, str | None]: ...
    def set_principal(self, principal: str | None) -> tuple[str, str | None]: ...
    def start_local(self, cache: Cache, now: float) -> tuple[str, Any]: ...
    def tags(self) -> list[str]: ...
    def on_entry(self, data: bytes, stale: bool, now: float) -> tuple[str, Any]: ...
    def on_response(self, status: int, headers: _Headers, body: bytes, now: float) -> HttpSettle: ...
    def pass_headers(self, bypass: str) -> _Headers: ...
    def set_edge_tags(self, tags: list[str], deps: Deps | None = None) -> None: ...

@final
class Deps:
    def __new__(cls) -> Deps: ...
    def __len__(self) -> int: ...
    def merge_into(self, parent: Deps) -> None: ...

@final
class Lease:
    @property
    def key(self) -> str: ...
    @property
    def tracks_dependencies(self) -> bool: ...
    def complete(
        self,
        data: bytes,
        format: int,
        ttl: float | None = None,
        grace: float = 0.0,
        tags: list[str] | None = None,
        deps: Deps | None = None,
    ) -> None: ...
    def acomplete(
        self,
        data: bytes,
        format: int,
        ttl: float | None = None,
        grace: float = 0.0,
        tags: list[str] | None = None,
        deps: Deps | None = None,
    ) -> Awaitable[None]: ...
    def settle(
        self,
        kind: int,
        data: bytes,
        format: int,
        ttl: float | None = None,
        grace: float = 0.0,
        tags: list[str] | None = None,
        deps: Deps | None = None,
        adapt: tuple[float | None, float | None, list[str] | None] | None = None,
    ) -> bool: ...
    def asettle(
        self,
        kind: int,
        data: bytes,
        format: int,
        ttl: float | None = None,
        grace: float = 0.0,
        tags: list[str] | None = None,
        deps: Deps | None = None,
        adapt: tuple[float | None, float | None, list[str] | None] | None = None,
    ) -> Awaitable[bool]: ...
    def abandon(self, exc: BaseException) -> None: ...
    def fail(self, exc: BaseException) -> _Value | None: ...
    def afail(self, exc: BaseException) -> Awaitable[_Value | None]: ...
    def fallback(self) -> _Value | None: ...
    def deadline(self, i: int) -> tuple[float, bool] | None: ...
    def deadline_passed(self, hard: bool) -> _Value | None: ...
    @property
    def is_fleet(self) -> bool: ...

@final
class Policy:
    def __new__(
        cls,
        *,
        allow_stale: bool = False,
        wait_timeout: float | None = None,
        early_refresh: float | None = None,
        refresh_ahead: float | None = None,
        fail_safe: bool = False,
        fail_safe_throttle: float | None = None,
        soft_timeout: float | None = None,
        hard_timeout: float | None = None,
        wait_timeout_fails: bool = False,
        tags: list[str] | None = None,
        none_ttl: float | None = None,
    ) -> Policy: ...

@final
class Cache:
    # Every option left None takes the core's default (tests/vectors/constants.json).
    def __new__(
        cls,
        *,
        namespace: str | None = None,
        redis_url: str | None = None,
        cluster: list[str] | None = None,
        l1: bool | None = None,
        l1_max_bytes: int | None = None,
        l1_memo_bytes: int | None = None,
        default_ttl: float | None = None,
        compress_threshold: int | None = None,
        max_value_bytes: int | None = None,
        signing_key: bytes | None = None,
        connect_timeout: float | None = None,
        op_timeout: float | None = None,
        tombstone_ttl: float | None = None,
        wait_timeout: float | None = None,
        ttl_jitter: float | None = None,
        fleet_lease: bool | None = None,
        lease_ttl: float | None = None,
        isolated: bool | None = None,
        breaker_threshold: int | None = None,
        breaker_cooldown: float | None = None,
        accepted_formats: list[int] | None = None,
        track_dependencies: bool | None = None,
        edge_purge: str | None = None,
    ) -> Cache: ...
    @property
    def namespace(self) -> str: ...
    @property
    def has_l2(self) -> bool: ...
    @property
    def tracks_dependencies(self) -> bool: ...
    def get_local(self, key: str) -> _Value | None: ...
    def get(self, key: str) -> _Value | None: ...
    def get_value(self, key: str, loads: Callable[[int, bytes], Any], memo: int, default: Any) -> Any: ...
    def get_many_values(
        self,
        keys: list[str],
        loads: Callable[[int, bytes], Any],
        memo: int,
        missing: Any,
        refused: Any,
        refused_type: type[BaseException],
    ) -> list[Any]: ...
    def lookup_value(
        self, key: str, policy: Policy, loads: Callable[[int, bytes], Any], memo: int, deps: Deps | None = None
    ) -> tuple[int, Any, Lease | None]: ...
    def get_tracked(self, key: str, deps: Deps) -> _Value | None: ...
    def get_many_tracked(self, keys: list[str], deps: Deps) -> list[_Value | None]: ...
    def aget_tracked(self, key: str, deps: Deps) -> Awaitable[_Value | None]: ...
    def aget_many_tracked(self, keys: list[str], deps: Deps) -> Awaitable[list[_Value | None]]: ...
    def track_tags(self, deps: Deps, tags: list[str]) -> None: ...
    def atrack_tags(self, deps: Deps, tags: list[str]) -> Awaitable[None]: ...
    def get_local_value(self, key: str, loads: Callable[[int, bytes], Any], memo: int, default: Any) -> Any: ...
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
    def invalidate_tags(self, tags: list[str]) -> None: ...
    def ainvalidate_tags(self, tags: list[str]) -> Awaitable[None]: ...
    def close(self) -> None: ...
    def stats(self) -> dict[str, int]: ...
    def metrics_text(self) -> str: ...
    @property
    def identity(self) -> str: ...
    def bypassing(self) -> Cache: ...
    def simulate_outage(self, on: bool) -> None: ...
    def doctor(self, json: bool) -> tuple[str, int]: ...
    def census(self, json: bool) -> str: ...
    def flush_edge_purges(self, timeout: float) -> bool: ...
    def lookup(self, key: str, policy: Policy) -> _LookupResult: ...
    def try_leases(self, keys: list[str], force: bool = False) -> list[Lease]: ...
    def atry_leases(self, keys: list[str], force: bool = False) -> Awaitable[list[Lease]]: ...
    def complete_many(
        self,
        items: list[tuple[Lease, bytes, int]],
        ttl: float | None = None,
        grace: float = 0.0,
        deps: Deps | None = None,
        tags: list[str] | None = None,
    ) -> int: ...
    def lookup_many(self, keys: list[str]) -> list[tuple[int, int | None, bytes | None, Lease | None]]: ...
    def alookup_many(self, keys: list[str]) -> Awaitable[list[tuple[int, int | None, bytes | None, Lease | None]]]: ...
    def acomplete_many(
        self,
        items: list[tuple[Lease, bytes, int]],
        ttl: float | None = None,
        grace: float = 0.0,
        deps: Deps | None = None,
        tags: list[str] | None = None,
    ) -> Awaitable[int]: ...
    def aget(self, key: str) -> Awaitable[_Read | None]: ...
    def aget_many(self, keys: list[str]) -> Awaitable[list[_Value | None]]: ...
    def aset(
        self,
        key: str,
        data: bytes,
        format: int,
        ttl: float | None = None,
        grace: float = 0.0,
        tags: list[str] | None = None,
        deps: Deps | None = None,
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
    def alookup(self, key: str, policy: Policy, deps: Deps | None = None) -> Awaitable[_LookupResult]: ...
