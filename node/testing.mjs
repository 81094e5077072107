// ESM entry point of `stratacache/testing`.
import cjs from './testing.js'

export const { uniqueNamespace, isolatedCache, redisDown, counting, spy } = cjs
export default cjs
