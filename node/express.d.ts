import type { Cache, Ttl } from './index'

export interface HttpCacheOptions<Req = unknown> {
  /** The cache to store responses in. */
  cache: Cache
  /** Freshness lifetime (`max-age`). Default `'60s'`. */
  ttl?: Ttl
  /** Serve stale for this long while one request refreshes. Default 0. */
  staleWhileRevalidate?: Ttl
  /** stale-if-error: serve the previous response (up to this long past its TTL) instead of a 5xx. Default 0. */
  staleIfError?: Ttl
  /** Request headers that select different responses (sent as `Vary`). */
  vary?: string[]
  /** Key credentialed requests per user (private entries); without it they bypass the cache. */
  keyBy?: (req: Req) => string | Promise<string>
  /** Cookie names that identify a user. */
  credentialCookies?: string[]
  /** Send `X-Cache: HIT | MISS | STALE | BYPASS`. Default `true`. */
  xCache?: boolean
  /** Tags of the stored responses (invalidate them with `cache.invalidateTags`). */
  tags?: string[] | ((req: Req) => string[] | Promise<string[]>)
  /** Route identity in the key (default: the route path). */
  name?: string
}

export type ExpressMiddleware = (req: any, res: any, next: (err?: unknown) => void) => void

/** Express middleware caching the route's responses with HTTP semantics. */
export declare function cached(options: HttpCacheOptions): ExpressMiddleware
export default cached
