"""OpenTelemetry through the SDK's in-memory exporters: spans for reads,
writes and read-throughs (the loader as a child span), keys only when
asked, and the counters and gauges as metrics. Real Redis."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conftest import REDIS_URL
from stratacache import Cache
from stratacache.otel import instrument


@pytest.fixture
def traced(ns: str) -> Iterator[tuple[Cache, InMemorySpanExporter, InMemoryMetricReader]]:
    spans = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    c = Cache(redis_url=REDIS_URL, namespace=ns)
    instrument(c, tracer_provider=tp, meter_provider=mp)
    yield c, spans, reader
    c.close()


def by_name(spans: InMemorySpanExporter) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {}
    for s in spans.get_finished_spans():
        out.setdefault(s.name, []).append(s)
    return out


def test_reads_writes_and_read_throughs(traced: tuple[Cache, InMemorySpanExporter, InMemoryMetricReader]) -> None:
    c, spans, _ = traced
    c.set("k", 1)
    assert c.get("k") == 1
    assert c.get("absent") is None
    assert c.get_or_set("t", lambda: "loaded") == "loaded"
    assert c.get_or_set("t", lambda: "again") == "loaded"
    assert c.get_many(["k", "absent"]) == {"k": 1}
    c.invalidate_tags(["x"])
    got = [(s.name, dict(s.attributes or {})) for s in spans.get_finished_spans()]  # type: ignore[attr-defined]
    names = [n for n, _ in got]
    assert names == [
        "stratacache.set",
        "stratacache.get",
        "stratacache.get",
        "stratacache.load",
        "stratacache.get_or_set",
        "stratacache.get_or_set",
        "stratacache.get_many",
        "stratacache.invalidate_tags",
    ]
    assert {k: v for k, v in got[1][1].items() if k != "stratacache.tier"} == {
        "stratacache.namespace": c.namespace,
        "stratacache.operation": "get",
        "stratacache.hit": True,
    }
    assert got[2][1]["stratacache.hit"] is False
    assert got[4][1]["stratacache.outcome"] == "loaded"
    assert got[5][1]["stratacache.outcome"] == "hit"
    assert got[6][1]["stratacache.hit"] == 1
    # The loader's span is a child of its read-through's.
    load, through = spans.get_finished_spans()[3], spans.get_finished_spans()[4]  # type: ignore[index]
    assert load.parent is not None and load.parent.span_id == through.context.span_id
    assert all("stratacache.key" not in a for _, a in got)


def test_async_and_keys_when_asked(ns: str) -> None:
    spans = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    c = Cache(redis_url=REDIS_URL, namespace=ns)
    instrument(c, tracer_provider=tp, meter_provider=MeterProvider(), record_keys=True)

    async def main() -> None:
        async def load() -> int:
            return 5

        assert await c.aget_or_set("a", load) == 5
        await c.aset("b", 2)
        assert await c.aget("b") == 2

    asyncio.run(main())
    names = [s.name for s in spans.get_finished_spans()]
    assert names == ["stratacache.load", "stratacache.get_or_set", "stratacache.set", "stratacache.get"]
    assert spans.get_finished_spans()[1].attributes["stratacache.key"] == "a"  # type: ignore[index]
    c.close()


def test_counters_and_gauges_as_metrics(traced: tuple[Cache, InMemorySpanExporter, InMemoryMetricReader]) -> None:
    c, _, reader = traced
    c.set("k", 1)
    c.get("k")
    c.get("k")
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        m.name: (type(m.data).__name__, [(p.value, dict(p.attributes or {})) for p in m.data.data_points])
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    hits = {n: points[f"stratacache.{n}"] for n in ("l1_hits", "l2_hits")}
    assert all(kind == "Sum" for kind, _ in hits.values())
    # Two reads, from L1 or (until the bus is up) from Redis: as stats() says.
    assert sum(v for _, pts in hits.values() for v, _ in pts) == 2
    assert hits["l1_hits"][1][0][1] == {"stratacache.namespace": c.namespace}
    assert hits["l1_hits"][1][0][0] == c.stats()["l1_hits"]
    assert points["stratacache.writes"][1][0][0] == 1
    assert points["stratacache.l1_entries"][0] == "Gauge"
    assert points["stratacache.bus_connected"][0] == "Gauge"
    assert len(points) == len(c.stats())


def test_without_a_recording_provider_nothing_is_wrapped(ns: str) -> None:
    # No tracer provider given and none configured globally (the API's
    # placeholder): the hot path stays the class's own method.
    c = Cache(namespace=ns)
    instrument(c, meter_provider=MeterProvider())
    assert "get" not in vars(c) and "get_or_set" not in vars(c)
    instrument(c, meter_provider=MeterProvider(), spans=False)
    assert "get" not in vars(c)
    c.close()


def _tracer() -> tuple[TracerProvider, InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    return tp, spans


def _attrs(spans: InMemorySpanExporter, name: str) -> list[dict[str, object]]:
    return [dict(s.attributes or {}) for s in spans.get_finished_spans() if s.name == name]  # type: ignore[attr-defined]


def _bus_up(c: Cache) -> None:
    """Until the cache's bus is subscribed (L1 is trusted from then on)."""
    c.get("bus-probe")
    for _ in range(2000):
        if c.stats()["bus_connected"]:
            return
        threading.Event().wait(0.005)
    raise AssertionError("the bus never connected")


def _ready(c: Cache, spans: InMemorySpanExporter) -> None:
    _bus_up(c)
    spans.clear()


def _served(a: dict[str, object]) -> tuple[object, object]:
    return a.get("stratacache.outcome", a.get("stratacache.hit")), a.get("stratacache.tier")


def test_spans_say_how_reads_were_served(ns: str) -> None:
    tp, spans = _tracer()
    c = Cache(redis_url=REDIS_URL, namespace=ns)
    far = Cache(redis_url=REDIS_URL, namespace=ns, l1=False)  # another process's view: Redis only
    for x in (c, far):
        instrument(x, tracer_provider=tp, meter_provider=MeterProvider())
    _ready(c, spans)
    c.set("k", {"id": 1})
    c.set("none", None)
    assert c.get("k") == {"id": 1} and far.get("k") == {"id": 1}
    assert c.get("none", "d") is None  # a stored None is a hit
    assert c.get("absent") is None
    assert [_served(a) for a in _attrs(spans, "stratacache.get")] == [
        (True, "l1"),
        (True, "l2"),
        (True, "l1"),
        (False, None),
    ]
    # Read-throughs: a lead, an L1 hit, a Redis hit, an early refresh (an
    # L1 hit that refreshes in the background) and a stale value.
    # (Not integers: they live in Redis only, for incr.)
    assert c.get_or_set("t", lambda: "1") == "1"
    assert c.get_or_set("t", lambda: "2") == "1"
    assert far.get_or_set("t", lambda: "3") == "1"
    refreshes = c.stats()["early_refreshes"]
    assert c.get_or_set("t", lambda: "4", refresh_ahead=1.0) == "1"
    assert c.stats()["early_refreshes"] == refreshes + 1  # served from L1 while it refreshes
    c.set("s", "old", ttl=0.001, grace=60)
    threading.Event().wait(0.005)
    assert c.get_or_set("s", lambda: "new", allow_stale=True) == "old"

    # This call leads the load, which fails: fail-safe serves the stale value.
    def down() -> str:
        raise ConnectionError("db down")

    c.set("f", "old", ttl=0.001, grace=60)
    threading.Event().wait(0.005)
    assert c.get_or_set("f", down, fail_safe=True) == "old"
    assert [_served(a) for a in _attrs(spans, "stratacache.get_or_set")] == [
        ("loaded", None),
        ("hit", "l1"),
        ("hit", "l2"),
        ("hit", "l1"),
        ("stale", None),
        ("stale", None),
    ]
    c.close()
    far.close()


def test_a_read_through_that_waited_says_so(ns: str) -> None:
    tp, spans = _tracer()
    c = Cache(redis_url=REDIS_URL, namespace=ns)
    instrument(c, tracer_provider=tp, meter_provider=MeterProvider())
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        assert release.wait(10)
        return "v"

    leader = threading.Thread(target=lambda: c.get_or_set("k", slow))
    leader.start()
    assert started.wait(10)
    waiter = threading.Thread(target=lambda: c.get_or_set("k", lambda: "never"))
    waits = c.stats()["coalesced_waits"]
    waiter.start()
    for _ in range(5000):  # until it waits on the leader's flight
        if c.stats()["coalesced_waits"] > waits:
            break
        threading.Event().wait(0.001)
    else:
        raise AssertionError("the second caller never waited on the first's load")
    release.set()
    leader.join(10)
    waiter.join(10)
    assert sorted(_served(a) for a in _attrs(spans, "stratacache.get_or_set")) == [("loaded", None), ("waited", None)]
    c.close()


def test_async_spans_are_not_told_another_tasks_read(ns: str) -> None:
    tp, spans = _tracer()
    c = Cache(redis_url=REDIS_URL, namespace=ns)
    instrument(c, tracer_provider=tp, meter_provider=MeterProvider())
    other = Cache(namespace=f"{ns}-other")  # not traced: it notes its reads and nobody takes them
    other.set("hot", "1")
    _ready(c, spans)

    async def main() -> None:
        gate = asyncio.Event()

        async def load() -> str:
            await gate.wait()
            return "2"

        # While the miss's Redis read and the lead's loader are awaited,
        # another read on the same thread notes an L1 hit: each span keeps
        # its own answer.
        slow = asyncio.create_task(c.aget_or_set("cold", load))
        missing = asyncio.create_task(c.aget("absent"))
        await asyncio.sleep(0)
        assert other.get("hot") == "1"
        gate.set()
        assert await slow == "2" and await missing is None

    asyncio.run(main())
    assert [_served(a) for a in _attrs(spans, "stratacache.get")] == [(False, None)]
    assert [_served(a) for a in _attrs(spans, "stratacache.get_or_set")] == [("loaded", None)]
    c.close()
    other.close()
