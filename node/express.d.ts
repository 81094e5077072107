import type { Cache, Ttl } from './index'

/**
 * Options of the HTTP response cache (Express middleware, Fastify route
 * config). Unknown options are refused with a `ConfigError` (`E_CONFIG`).
 */
export interface HttpCacheOptions<Req = any> {
  /** The cache to store responses in. */
  cache: Cache
  /** Freshness lifetime, an upper bound (the handler's `max-age` / `s-maxage` may shorten it). Default `'60s'`. */
  ttl?: Ttl
  /** Serve a stale response for this long past its TTL while one background request refreshes it. Default 0. */
  staleWhileRevalidate?: Ttl
  /** stale-if-error: serve the previous response (up to this long past its TTL) instead of a 5xx or a thrown error. Default 0. */
  staleIfError?: Ttl
  /** Request headers the responses always vary on (keyed and sent as `Vary`). A handler's own `Vary` is honoured too. */
  vary?: string[]
  /**
   * Key private requests (with `Authorization`, a private header, or any
   * cookie not in `sharedCookies`) per user: return the principal, or
   * `null` when it cannot tell (the request then bypasses the cache).
   * Without it, private requests always bypass the cache.
   */
  keyBy?: (req: Req) => string | null | undefined | Promise<string | null | undefined>
  /** Cookie names that do not identify a user (analytics, preferences): a request carrying only these may get a shared entry. Default none. */
  sharedCookies?: string[]
  /** Request headers besides `Authorization` and `Cookie` that carry credentials (e.g. `x-api-key`). */
  privateHeaders?: string[]
  /** A client's `Cache-Control`: `'ignore'` (default, as CDNs do) or `'honor'` (`no-cache` / `max-age=0` refresh through the single flight). */
  requestDirectives?: 'ignore' | 'honor'
  /** Send `X-Cache: HIT | MISS | STALE | BYPASS`. Default `true`. `Cache-Status` (RFC 9211) is always sent. */
  xCache?: boolean
  /** Tags of the stored responses (invalidate them with `cache.invalidateTags`). */
  tags?: string[] | ((req: Req) => string[] | Promise<string[]>)
  /** Separates the entries of apps sharing one namespace. Default `''`. */
  scope?: string
  /**
   * How long a CDN or reverse proxy in front may keep shared responses:
   * `s-maxage` in the default `Cache-Control`, and `CDN-Cache-Control` and
   * `Surrogate-Control` with `max-age` plus the route's
   * `stale-while-revalidate` / `stale-if-error`, unless the handler sent
   * them. Private responses never carry them. Default 0 (none).
   */
  edgeTtl?: Ttl
  /**
   * The header carrying a stored response's tags (its own, its route's URL
   * tag and the tags of what its handler read) to the edge:
   * `'Surrogate-Key'` (Fastly, Varnish xkey), `'Cache-Tag'` (Cloudflare),
   * `'Edge-Cache-Tag'` (Akamai), or another name (CloudFront's limits).
   * Tags a vendor cannot take are sent hashed (`h-` + 32 hex digits); too
   * many for the header become `stratacache-overflow`. Shared responses
   * only. Default none.
   */
  edgeTagHeader?: string
}

export type ExpressMiddleware = (req: any, res: any, next: (err?: unknown) => void) => void

/**
 * Express middleware caching the route's responses with HTTP semantics. On
 * an unsafe route (POST, PUT, PATCH, DELETE) it invalidates the path's
 * entries after a successful response.
 */
export declare function cached<Req = any>(options: HttpCacheOptions<Req>): ExpressMiddleware
export default cached

/**
 * A Prometheus endpoint for `caches`: each metric family once, a sample
 * per namespace; with `token`, only `Authorization: Bearer <token>`.
 */
export declare function metricsHandler(
  caches: import('./index').Cache | import('./index').Cache[],
  options?: { token?: string },
): (req: any, res: any) => void
