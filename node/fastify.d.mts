// ES module types of 'stratacache/fastify' (the default export is the plugin).
import { stratacacheFastify } from './fastify.js'

export type { HttpCacheOptions } from './express.js'
export { stratacacheFastify }
export default stratacacheFastify
