'use strict'
// Refusing unknown options with a hint, for the Cache and the HTTP cache.

const { ConfigError } = require('./errors.js')
const { nearestName } = require('./binding.js')

/** Refuse an unknown option with ConfigError (E_CONFIG) naming it and the nearest known one. */
function checkOptions(o, known, what) {
  for (const k of Object.keys(o)) {
    if (known.includes(k)) continue
    const near = nearestName(k, known)
    throw new ConfigError(`unknown ${what} option ${JSON.stringify(k)}${near ? ` (did you mean ${near}?)` : ''}`)
  }
}

module.exports = { checkOptions }
