// ES module types of 'stratacache/fastify' (the default export is the plugin).
import { stratacacheFastify, metricsHandler } from './fastify.js'

export type { HttpCacheOptions } from './express.js'
export { stratacacheFastify, metricsHandler }
export default stratacacheFastify
