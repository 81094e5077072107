import type { HttpCacheOptions } from './express'

export type { HttpCacheOptions }

/**
 * Fastify plugin. Register it once with defaults (at least `cache`), then
 * opt routes in with `{ config: { cache: { ttl: '1m', ... } } }`.
 */
export declare function stratacacheFastify(fastify: any, options: Partial<HttpCacheOptions> & Pick<HttpCacheOptions, 'cache'>): Promise<void>
export default stratacacheFastify
