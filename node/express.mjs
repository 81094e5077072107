import cjs from './express.js'

export const { cached } = cjs
export default cjs.cached
