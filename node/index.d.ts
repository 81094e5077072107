// Types of the stratacache Node.js package (hand-written; checked by
// `tsc -p tests/node/tsconfig.json` in `make lint`).
import { EventEmitter } from 'node:events'

/** Milliseconds, or a string like '500ms', '5s', '5m', '1h', '1d'. `null`/`Infinity`: never expire. */
export type Ttl = number | string | null

export interface Serializer {
  readonly name: string
  /** Bytes (a string is stored as its UTF-8) and the serializer id recorded in the entry. */
  encode(value: unknown): [Buffer | string, number]
}

export interface CacheOptions {
  /** Redis URL: `redis://`, `rediss://` (TLS) or `unix://`. Omit for in-process only. */
  redis?: string
  /** Redis Cluster seed URLs (instead of `redis`). */
  cluster?: string[]
  /** Namespace of every key, `[A-Za-z0-9_.-]{1,64}`. Default `'default'`. */
  namespace?: string
  /**
   * In-process tier; `false` disables it. `memoBytes` of the bound (a
   * quarter unless given, 0 for none) holds what hits keep: the values
   * `clone: false` hits share, else the text of JSON and UTF-8 entries of
   * at least 128 bytes, so that a hit decodes it without first copying the
   * entry into a new string. `maxBytes`: Default 64 MiB.
   */
  l1?: false | { enabled?: boolean; maxBytes?: number; memoBytes?: number }
  /** Default TTL. Default `'5m'`; `null` means never expire. */
  ttl?: Ttl
  /** `'json'` (default, shared with Python), `'v8'`, `'raw'`. */
  serializer?: 'json' | 'v8' | 'raw' | Serializer
  /** zstd-compress payloads of at least this many bytes. Default 4096. */
  compressThreshold?: number
  /** Largest value accepted. Default 32 MiB. */
  maxValueBytes?: number
  /** HMAC-SHA256 key: entries are signed; unsigned or forged ones are misses. */
  signingKey?: string | Buffer
  /** How long connecting to Redis may take. Default 1 s. */
  connectTimeout?: Ttl
  /**
   * How long a Redis command may take before it counts as failed (then the
   * breaker and fail-open rules apply). Default 500 ms.
   */
  opTimeout?: Ttl
  /** How long `getOrSet` waits for another caller's factory. Default 30 s. */
  waitTimeout?: Ttl
  /** How long a delete fences loads that began before it (a tombstone in Redis). Default 60 s. */
  tombstoneTtl?: Ttl
  /** Shorten each TTL by a random fraction up to this (0-1), so keys written together expire apart. */
  ttlJitter?: number
  /**
   * Redis errors become misses / failed writes and an `'error'` event
   * (default `true`); `false` rejects with them.
   */
  failOpen?: boolean
  /** Fleet-wide single loader through a lease in Redis. Default `true`. */
  fleetLease?: boolean
  /**
   * Factories (getOrSet, warm, cached HTTP handlers) collect what they read
   * as dependencies of the value they build (see the README). Off, only
   * explicit tags invalidate what they build, and no AsyncLocalStorage is
   * entered (on Node 20 its promise hooks, once on, add ~0.2 µs to every
   * await in the process). Default `true`.
   */
  trackDependencies?: boolean
  /** How long a crashed loader's lease blocks the fleet (extended while alive). Default 5 s. */
  leaseTtl?: Ttl
  /** @deprecated No effect: every read goes through the core (the JS-thread reader was removed). */
  jsReads?: boolean
  /** Circuit breaker: after `threshold` (5) consecutive Redis failures, skip Redis for `cooldown` (250 ms), then probe. */
  breaker?: { threshold?: number; cooldown?: Ttl }
  /** Defaults of every `getOrSet` call's policy options. */
  policy?: Policy
  /**
   * `false`: L1 hits of `get` and `getOrSet` share one deep-frozen value
   * per entry instead of decoding a copy each time (never mutate it; a
   * value holding a Buffer, typed array, Map, Set or Date is copied as
   * usual, Object.freeze could not protect it). What each Cache handle
   * keeps is bounded by `l1.memoBytes`. Default `true` (every hit a copy).
   */
  clone?: boolean
  /**
   * Edges (CDNs, reverse proxies, webhooks) purged of every tag this process
   * invalidates (once per fleet: the invalidating process sends). See the
   * README, "Caching at the edge". Default none.
   */
  edgePurge?: EdgePurge[]
}

/** Fields every edge takes (camelCase or the core's snake_case). */
interface EdgeCommon {
  /** Mark stale instead of removing (Varnish softpurge, Fastly soft purge, Akamai invalidate). */
  soft?: boolean
  /** Per-request timeout in ms (5000). */
  timeoutMs?: number
  /** Attempts per request before it is given up (5). */
  maxAttempts?: number
  /** How long tags gather before a batch is sent, ms (50). */
  lingerMs?: number
  /** The tag header whose rules name tags for this edge (the vendor's own). */
  tagHeader?: string
}

/** One edge to purge. */
export type EdgePurge = EdgeCommon &
  (
    | { kind: 'varnish'; url: string; method?: string; keyHeader?: string; headers?: Record<string, string> }
    | { kind: 'fastly'; serviceId: string; token: string; apiBase?: string }
    | { kind: 'cloudflare'; zoneId: string; token: string; apiBase?: string }
    | {
        kind: 'cloudfront'
        distributionId: string
        accessKeyId: string
        secretAccessKey: string
        sessionToken?: string
        apiBase?: string
      }
    | {
        kind: 'akamai'
        host: string
        clientToken: string
        clientSecret: string
        accessToken: string
        network?: 'production' | 'staging'
        apiBase?: string
      }
    | { kind: 'webhook'; url: string; secret?: string; headers?: Record<string, string> }
  )

/** How `getOrSet` reads through (every field optional). */
export interface Policy {
  /** How long a stale value stays servable after its TTL (SWR and fail-safe). */
  grace?: Ttl
  /** Serve a stale value at once and refresh it in the background (once per fleet). */
  allowStale?: boolean
  /** How long to wait for another caller's (or process's) load. Default 30 s. */
  waitTimeout?: Ttl
  /** After `waitTimeout`: load yourself (default) or reject with WaitTimeoutError. */
  onWaitTimeout?: 'load' | 'fail'
  /** Probabilistic early refresh (XFetch) `beta`, e.g. 1: hot keys reload in the background before they expire. */
  earlyRefresh?: number
  /** Refresh in the background within this fraction of the TTL from expiry, e.g. 0.2. */
  refreshAhead?: number
  /** Serve the stale value (within `grace`) when the factory throws or exceeds `softTimeout`. */
  failSafe?: boolean
  /** How long a fail-safe value stays fresh after a failure. Default 30 s. */
  failSafeThrottle?: Ttl
  /** With fail-safe and a stale value: stop waiting for the factory after this long. */
  softTimeout?: Ttl
  /** No caller waits longer: stale value or LoaderTimeoutError (the factory goes on). */
  hardTimeout?: Ttl
  /** TTL of a `null`/`undefined` result; 0: never cached. Default: like any value. */
  noneTtl?: Ttl
}

export interface SetOptions {
  /** How long a stale value may still be served by `getOrSet({ allowStale: true })`. */
  grace?: Ttl
  tags?: string[]
}

export interface GetOrSetOptions<T> extends Policy {
  key: string
  /**
   * Produces the value; return `new NoCache(v)` to hand `v` out uncached,
   * or `new Loaded(v, { ttl, grace, tags })` to choose the entry's TTL,
   * grace and extra tags from what was loaded.
   */
  factory: () => T | NoCache<T> | Loaded<T> | Promise<T | NoCache<T> | Loaded<T>>
  ttl?: Ttl
  tags?: string[]
}

export interface FragmentOptions extends Policy {
  name: string
  /** Renders the fragment (its string form is what is cached). */
  render: () => string | Promise<string>
  /** Values the fragment varies on (each a separate fragment). */
  varyOn?: Array<string | number | bigint | boolean | null>
  ttl?: Ttl
  tags?: string[]
}

export interface WarmOptions<T> {
  /** Loads one key (or give `loadMany`). */
  factory?: (key: string) => T | Promise<T>
  /** Loads every key that needs it in one call. */
  loadMany?: (keys: string[]) => Record<string, T> | Map<string, T> | Promise<Record<string, T> | Map<string, T>>
  ttl?: Ttl
  grace?: Ttl
  /** Reload even fresh keys. */
  force?: boolean
}

/**
 * A factory result with the loader's own choices (adaptive caching): a
 * given `ttl` or `grace` replaces the caller's (`ttl: 0`: hand the value
 * out, do not store it); `tags` are added to the caller's.
 */
export declare class Loaded<T = unknown> {
  constructor(value: T, options?: { ttl?: Ttl; grace?: Ttl; tags?: string[] })
  readonly value: T
}

/** A factory result handed to callers but not cached. */
export declare class NoCache<T = unknown> {
  constructor(value: T)
  readonly value: T
}

export declare const Format: {
  readonly RAW: 0
  readonly PICKLE: 1
  readonly JSON: 2
  readonly MSGPACK: 3
  readonly V8: 4
  readonly INT: 5
  readonly UTF8: 6
}

export declare function parseTtl(ttl: Ttl | undefined, name?: string): number | undefined

export declare class Cache extends EventEmitter {
  constructor(options?: CacheOptions)
  readonly namespace: string
  get<T = unknown>(key: string): Promise<T | undefined>
  getMany<T = unknown>(keys: string[]): Promise<Array<T | undefined>>
  set(key: string, value: unknown, ttl?: Ttl, options?: SetOptions): Promise<boolean>
  setMany(entries: Array<[string, unknown]>, ttl?: Ttl): Promise<string[]>
  add(key: string, value: unknown, ttl?: Ttl): Promise<boolean>
  delete(key: string): Promise<boolean>
  deleteMany(keys: string[]): Promise<number>
  touch(key: string, ttl?: Ttl): Promise<boolean>
  has(key: string): Promise<boolean>
  incr(key: string, delta?: number): Promise<number | bigint>
  decr(key: string, delta?: number): Promise<number | bigint>
  clear(): Promise<void>
  getOrSet<T>(options: GetOrSetOptions<T>): Promise<T>
  /**
   * A rendered fragment through the read-through: rendered once per key
   * across the fleet while other callers wait, tagged, dependent on what
   * `render` reads through the cache. Keyed by `name` and `varyOn`.
   */
  fragment(options: FragmentOptions): Promise<string>
  /** Make every entry carrying any of `tags` stale, in every process. */
  invalidateTags(tags: string[]): Promise<void>
  /**
   * Run `fn` with caching off for this cache (and whatever it starts):
   * reads find nothing, getOrSet runs its factory every time and stores
   * nothing, writes store nothing (`add` resolves true, `touch` false);
   * deletes, invalidations, `clear` and counters work as usual. Returns
   * what `fn` returns.
   */
  disabled<T>(fn: () => T): T
  /**
   * Inside a factory (getOrSet, warm, a cached HTTP handler): what it builds
   * depends on `tags` too, at their current versions (for what the cache
   * cannot see, such as a database read). Outside a factory it does
   * nothing. Reads made inside a factory (get, getMany, a nested getOrSet)
   * are dependencies without being named.
   */
  dependsOn(...tags: string[]): Promise<void>
  /**
   * The values of `keys`: fresh ones from the cache, the rest loaded by one
   * `loadMany(missing)` call through the fleet leases (a key loaded
   * elsewhere right now is waited for); keys it leaves out are absent.
   */
  getOrSetMany<T>(options: {
    keys: string[]
    loadMany: (keys: string[]) => Record<string, T> | Map<string, T> | Promise<Record<string, T> | Map<string, T>>
    ttl?: Ttl
    tags?: string[]
  }): Promise<Map<string, T>>
  /** Load keys ahead of traffic through the same leases; resolves how many were stored. */
  warm<T>(keys: string[], options: WarmOptions<T>): Promise<number>
  stats(): Record<string, number>
  metrics(): string
  /**
   * Resolves `true` once the purges queued for the edges (`edgePurge`) are
   * sent or given up, `false` after `timeout` (default 10 s).
   */
  flushEdgePurges(timeout?: number | string): Promise<boolean>
  close(): Promise<void>
  on(event: 'error', listener: (err: StrataCacheError) => void): this
}

/**
 * One Prometheus exposition (text format 0.0.4) of several caches: each
 * metric family once, a sample per namespace.
 */
export declare function metricsText(...caches: Cache[]): string
/** Run `fn` with caching off for every cache (see `Cache#disabled`). */
export declare function disabled<T>(fn: () => T): T

export declare class StrataCacheError extends Error {
  readonly code: string
}
export declare class ConfigError extends StrataCacheError {}
export declare class InvalidKeyError extends StrataCacheError {}
export declare class ValueTooLargeError extends StrataCacheError {}
export declare class InvalidValueError extends StrataCacheError {}
export declare class RedisError extends StrataCacheError {}
export declare class RedisUnavailableError extends RedisError {}
export declare class RedisTimeoutError extends RedisError {}
export declare class KeyNotFoundError extends StrataCacheError {}
export declare class NotAnIntegerError extends StrataCacheError {}
export declare class LoaderError extends StrataCacheError {}
export declare class LeaseDroppedError extends StrataCacheError {}
export declare class WaitTimeoutError extends StrataCacheError {}
export declare class LoaderTimeoutError extends StrataCacheError {}
export declare class CacheClosedError extends StrataCacheError {}
