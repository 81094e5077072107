import type { Cache } from './index'

/** The `stats()` entries exported as gauges (the others are counters). */
export declare const GAUGES: ReadonlySet<string>
/**
 * Spans for `cache`'s calls and its counters as OTel metrics, through
 * `@opentelemetry/api` (install it). Span wrappers only when spans can be
 * recorded (a `tracerProvider`, or a recording global provider), unless
 * `spans` says otherwise.
 */
export declare function instrument(
  cache: Cache,
  options?: { tracerProvider?: unknown; meterProvider?: unknown; recordKeys?: boolean; spans?: boolean },
): void
