"""What OpenTelemetry instrumentation costs on the L1-hit path
(``make bench-otel``): ``Cache.get`` of a 10-field user dict from L1,
median of 7 runs of 200,000 gets, in one process:

- plain: not instrumented;
- no SDK: ``instrument(cache)`` when no OpenTelemetry SDK is installed or
  none is configured (no span wrappers: the default then);
- API only: span wrappers forced on (``spans=True``) over the global
  provider with no SDK configured (the API's no-op tracer);
- SDK: span wrappers over an SDK ``TracerProvider`` that records every
  span (no exporter), as a service with tracing on and sampling at 100 %.
"""

from __future__ import annotations

import statistics
import time

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from stratacache import Cache
from stratacache.otel import instrument

USER = {
    "id": 42,
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "active": True,
    "score": 9.5,
    "tags": ["alpha", "beta", "gamma"],
    "created": "2026-12-06T10:00:00Z",
    "country": "GB",
    "plan": "pro",
    "visits": 1234,
}
N = 200_000


def per_get_ns(c: Cache) -> float:
    c.set("user:42", USER, ttl=3600)
    get = c.get
    runs = []
    for _ in range(7):
        t = time.perf_counter_ns()
        for _ in range(N):
            get("user:42")
        runs.append((time.perf_counter_ns() - t) / N)
    return statistics.median(runs)


def main() -> None:
    rows = []
    plain = Cache(namespace="bench-otel-plain")
    rows.append(("plain", per_get_ns(plain)))
    nosdk = Cache(namespace="bench-otel-nosdk")
    instrument(nosdk, meter_provider=MeterProvider())  # no provider configured: no wrappers
    assert nosdk.get == nosdk.__class__.get.__get__(nosdk), "instrument wrapped get without a recording provider"
    rows.append(("instrumented, no SDK configured", per_get_ns(nosdk)))
    api = Cache(namespace="bench-otel-api")
    instrument(api, meter_provider=MeterProvider(), spans=True)
    rows.append(("instrumented, API only (no-op tracer)", per_get_ns(api)))
    sdk = Cache(namespace="bench-otel-sdk")
    instrument(sdk, tracer_provider=TracerProvider(), meter_provider=MeterProvider(), spans=True)
    rows.append(("instrumented, SDK recording every span", per_get_ns(sdk)))
    base = rows[0][1]
    print(f"L1 hit, Cache.get of a 10-field dict, median of 7 x {N:,} gets")
    for name, ns in rows:
        print(f"  {name:<42} {ns / 1000:6.2f} µs  {ns / base:5.2f}x")


if __name__ == "__main__":
    main()
