"""OpenTelemetry through the SDK's in-memory exporters: spans for reads,
writes and read-throughs (the loader as a child span), keys only when
asked, and the counters and gauges as metrics. Real Redis."""

from __future__ import annotations

import asyncio
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
    assert got[1][1] == {"stratacache.namespace": c.namespace, "stratacache.operation": "get", "stratacache.hit": True}
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
