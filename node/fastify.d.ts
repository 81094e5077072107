import type { HttpCacheOptions } from './express'

export type { HttpCacheOptions }

/**
 * Fastify plugin. Register it once with defaults (at least `cache`), then
 * opt routes in with `{ config: { cache: { ttl: '1m', ... } } }`.
 */
export declare function stratacacheFastify(fastify: any, options: Partial<HttpCacheOptions> & Pick<HttpCacheOptions, 'cache'>): Promise<void>
export default stratacacheFastify

/**
 * A Prometheus endpoint for `caches`: each metric family once, a sample
 * per namespace; with `token`, only `Authorization: Bearer <token>`.
 */
export declare function metricsHandler(
  caches: import('./index').Cache | import('./index').Cache[],
  options?: { token?: string },
): (request: any, reply: any) => Promise<unknown>
