import cjs from './fastify.js'

export const { stratacacheFastify, metricsHandler } = cjs
export default cjs
