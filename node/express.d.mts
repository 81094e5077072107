// ES module types of 'stratacache/express' (the default export is `cached`).
import { cached, metricsHandler } from './express.js'

export type { HttpCacheOptions, ExpressMiddleware } from './express.js'
export { cached, metricsHandler }
export default cached
