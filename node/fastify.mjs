import cjs from './fastify.js'

export const { stratacacheFastify } = cjs
export default cjs
