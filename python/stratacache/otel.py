"""OpenTelemetry for stratacache (``pip install stratacache[otel]``, which
brings ``opentelemetry-api``): spans for a cache's reads, writes and
read-throughs, with the loader's run as a child span, and the cache's
counters and gauges as OTel metrics::

    from stratacache.otel import instrument

    instrument(cache)                     # the global tracer and meter providers
    instrument(cache, tracer_provider=tp, meter_provider=mp, record_keys=False)

Only instrumented caches pay anything: nothing else is wrapped. Span
wrappers are installed only when spans can be recorded: a
``tracer_provider`` is given, or an SDK's provider is the global one when
``instrument`` is called (so call it after setting up tracing). Otherwise
(no SDK installed, or none configured) the hot paths are untouched;
metrics are observed at collection time only. ``make bench-otel`` measures
each case.

Span attributes: ``stratacache.namespace``, ``stratacache.operation``,
``stratacache.hit`` (reads: found or not; ``get_many``: how many);
``stratacache.tier`` (``l1`` or ``l2``: where a read or read-through's hit
came from); for read-throughs ``stratacache.outcome``: ``hit`` (served
from the cache), ``waited`` (another caller's read or load of the key, in
this process or through the fleet lease in another, which this call
waited for), ``stale`` (a stale value, refreshed in the background or
served fail-safe, also when this call's own load failed or ran late) or
``loaded`` (this call ran the loader and got its value). The core says how each read was served (``stratacache.Served``
in Rust); the calls note it where they answer. Keys are recorded
(``stratacache.key``) only with ``record_keys=True``: they may carry user
data. Metrics: every counter of ``stats()`` as an observable counter
``stratacache.<name>`` and every gauge as an observable gauge, each with a
``stratacache.namespace`` attribute.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from . import Cache, _native

__all__ = ["GAUGES", "instrument", "sdk_installed"]

#: The ``stats()`` entries that are gauges (the others are counters).
GAUGES = frozenset({"l1_entries", "l1_bytes", "l1_memo_bytes", "breaker_open", "bus_connected", "edge_purge_pending"})

_READS = ("get", "aget")
_WRITES = ("set", "aset", "delete", "adelete", "add", "aadd", "incr", "aincr", "touch", "atouch")
_MANY = ("get_many", "aget_many")
_THROUGH = ("get_or_set", "aget_or_set")
_TAGS = ("invalidate_tags", "ainvalidate_tags")
_MISSING = object()


def sdk_installed() -> bool:
    """Whether an OpenTelemetry SDK is importable."""
    return importlib.util.find_spec("opentelemetry.sdk") is not None


def _recording(tracer_provider: Any) -> bool:
    """Whether spans from ``tracer_provider`` (None: the global one) can be
    recorded: not the API's placeholder or no-op provider."""
    from opentelemetry import trace

    if tracer_provider is not None:
        return True
    if not sdk_installed():
        return False
    return not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def instrument(
    cache: Any,
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    record_keys: bool = False,
    spans: bool | None = None,
) -> None:
    """Trace ``cache``'s calls (a :class:`~stratacache.Cache` or a Django
    ``StrataCache`` backend) and export its counters. ``spans``: force span
    wrappers on or off (default: on when spans can be recorded, see the
    module's documentation)."""
    from opentelemetry import metrics, trace

    from . import __version__

    if spans is None:
        spans = _recording(tracer_provider)
    if spans:
        tracer = trace.get_tracer("stratacache", __version__, tracer_provider=tracer_provider)
        _wrap_spans(cache, tracer, record_keys)
    meter = metrics.get_meter("stratacache", __version__, meter_provider=meter_provider)
    _observe(cache, meter)


def _core(cache: Any) -> Cache:
    """The :class:`Cache` of a Cache or of a Django backend."""
    core = getattr(cache, "_c", cache)
    if not isinstance(core, Cache):
        raise TypeError(f"expected a stratacache Cache or Django StrataCache backend, got {type(cache).__name__}")
    return core


def _wrap_spans(cache: Any, tracer: Any, record_keys: bool) -> None:
    ns = _core(cache).namespace
    for name in (*_READS, *_WRITES, *_MANY, *_THROUGH, *_TAGS):
        method = getattr(cache, name, None)
        if method is None:
            continue
        setattr(cache, name, _wrapped(name, method, tracer, ns, record_keys))


_SYNC = frozenset(n for n in (*_READS, *_WRITES, *_MANY, *_THROUGH, *_TAGS) if not n.startswith("a") or n == "add")


def _op(name: str) -> str:
    """The operation of a method name: ``aget`` and ``get`` are ``get``."""
    return name[1:] if name.startswith("a") and name[1:] in _SYNC else name


def _start(tracer: Any, name: str, ns: str, key: Any, record_keys: bool) -> Any:
    attrs: dict[str, Any] = {"stratacache.namespace": ns, "stratacache.operation": _op(name)}
    if record_keys and isinstance(key, str):
        attrs["stratacache.key"] = key
    return tracer.start_as_current_span(f"stratacache.{_op(name)}", attributes=attrs)


def _loader_span(tracer: Any, loader: Any, ran: list[bool]) -> Any:
    """``loader`` run inside a ``stratacache.load`` span, noting that it ran."""
    if not callable(loader):
        return loader
    if inspect.iscoroutinefunction(loader):

        async def aload() -> Any:
            ran.append(True)
            with tracer.start_as_current_span("stratacache.load"):
                return await loader()

        return aload

    def load() -> Any:
        ran.append(True)
        with tracer.start_as_current_span("stratacache.load"):
            return loader()

    return load


def _wrapped(name: str, method: Callable[..., Any], tracer: Any, ns: str, record_keys: bool) -> Callable[..., Any]:
    def record(span: Any, result: Any, ran: list[bool]) -> None:
        # How the call was served: noted by the call itself on this thread
        # (cleared before it), None when it was a miss or is not known.
        served = _native.take_served()
        if name in _READS:
            span.set_attribute("stratacache.hit", served is not None or (result is not None and result is not _MISSING))
        elif name in _MANY:
            span.set_attribute("stratacache.hit", len(result))
        elif name in _THROUGH:
            outcome = served[0] if served is not None else "loaded" if ran else "hit"
            span.set_attribute("stratacache.outcome", outcome)
        if served is not None and served[1] is not None and (name in _READS or name in _THROUGH):
            span.set_attribute("stratacache.tier", served[1])

    def prepared(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any], list[bool]]:
        ran: list[bool] = []
        if name in _THROUGH:
            if len(args) >= 2:
                args = (args[0], _loader_span(tracer, args[1], ran), *args[2:])
            elif "loader" in kwargs:
                kwargs = {**kwargs, "loader": _loader_span(tracer, kwargs["loader"], ran)}
        return args, kwargs, ran

    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            key = args[0] if args else None
            with _start(tracer, name, ns, key, record_keys) as span:
                args, kwargs, ran = prepared(args, kwargs)
                _native.take_served()
                result = await method(*args, **kwargs)
                record(span, result, ran)
                return result

        return awrapper

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = args[0] if args else None
        with _start(tracer, name, ns, key, record_keys) as span:
            args, kwargs, ran = prepared(args, kwargs)
            _native.take_served()
            result = method(*args, **kwargs)
            record(span, result, ran)
            return result

    return wrapper


def _observe(cache: Any, meter: Any) -> None:
    from opentelemetry.metrics import CallbackOptions, Observation

    cache = _core(cache)
    ns = cache.namespace
    attrs = {"stratacache.namespace": ns}
    names: Iterable[str] = list(cache.stats())

    def callback(stat: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            try:
                value = cache.stats()[stat]
            except Exception:  # a closed cache: nothing to report
                return []
            return [Observation(value, attrs)]

        return observe

    for stat in names:
        if stat in GAUGES:
            meter.create_observable_gauge(f"stratacache.{stat}", callbacks=[callback(stat)])
        else:
            meter.create_observable_counter(f"stratacache.{stat}", callbacks=[callback(stat)])
