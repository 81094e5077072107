import cjs from './express.js'

export const { cached, metricsHandler } = cjs
export default cjs.cached
