import type { Cache, CacheOptions } from './index'

/** A namespace no other test uses. */
export declare function uniqueNamespace(prefix?: string): string
/** A cache in a namespace of its own: on `options.redis`, or in-process. */
export declare function isolatedCache(options?: CacheOptions): Cache
/**
 * Run `fn` with every Redis command of `caches` failing as if Redis were
 * unreachable (and L1 not trusted), as in a real outage; Redis is back
 * when `fn` settles.
 */
export declare function redisDown<T>(caches: Cache | Cache[], fn: () => T | Promise<T>): Promise<T>
/** Counters of `cache` from now on. */
export declare function counting(cache: Cache): {
  get(name: string): number
  all(): Record<string, number>
}
/** Wrap a factory and count its calls. */
export declare function spy<A extends unknown[], T>(fn: (...args: A) => T): ((...args: A) => T) & { calls: number; reset(): void }
