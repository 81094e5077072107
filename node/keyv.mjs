import cjs from './keyv.js'

export const { KeyvStratacache } = cjs
export default cjs.KeyvStratacache
