// Types of the stratacache Node.js package (hand-written; checked by
// `tsc -p tests/node/tsconfig.json` in `make lint`).
import { EventEmitter } from 'node:events'

/** Milliseconds, or a string like '500ms', '5s', '5m', '1h', '1d'. `null`/`Infinity`: never expire. */
export type Ttl = number | string | null

export interface Serializer {
  readonly name: string
  /** Bytes and the serializer id recorded in the entry. */
  encode(value: unknown): [Buffer, number]
}

export interface CacheOptions {
  /** Redis URL: `redis://`, `rediss://` (TLS) or `unix://`. Omit for in-process only. */
  redis?: string
  /** Redis Cluster seed URLs (instead of `redis`). */
  cluster?: string[]
  /** Namespace of every key, `[A-Za-z0-9_.-]{1,64}`. Default `'default'`. */
  namespace?: string
  /** In-process tier; `false` disables it. Default 64 MiB. */
  l1?: false | { enabled?: boolean; maxBytes?: number }
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
  connectTimeout?: Ttl
  opTimeout?: Ttl
  /** How long `getOrSet` waits for another caller's factory. Default 30 s. */
  waitTimeout?: Ttl
  tombstoneTtl?: Ttl
  /** Shorten each TTL by a random fraction up to this (0-1), so keys written together expire apart. */
  ttlJitter?: number
  /**
   * Redis errors become misses / failed writes and an `'error'` event
   * (default `true`); `false` rejects with them.
   */
  failOpen?: boolean
}

export interface SetOptions {
  /** How long a stale value may still be served by `getOrSet({ allowStale: true })`. */
  grace?: Ttl
  tags?: string[]
}

export interface GetOrSetOptions<T> {
  key: string
  factory: () => T | Promise<T>
  ttl?: Ttl
  grace?: Ttl
  /** Serve a stale value at once and refresh it in the background. */
  allowStale?: boolean
  waitTimeout?: Ttl
  tags?: string[]
  /** Probabilistic early refresh (XFetch) `beta`, e.g. 1: hot keys reload in the background before they expire. */
  earlyRefresh?: number
  /** Refresh in the background within this fraction of the TTL from expiry, e.g. 0.2. */
  refreshAhead?: number
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
  stats(): Record<string, number>
  metrics(): string
  close(): Promise<void>
  on(event: 'error', listener: (err: StrataCacheError) => void): this
}

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
