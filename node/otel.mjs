// ESM entry point of `stratacache/otel`.
import cjs from './otel.js'

export const { instrument, GAUGES } = cjs
export default cjs
