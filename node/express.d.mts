// ES module types of 'stratacache/express' (the default export is `cached`).
import { cached } from './express.js'

export type { HttpCacheOptions, ExpressMiddleware } from './express.js'
export { cached }
export default cached
