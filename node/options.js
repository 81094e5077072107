'use strict'
// Refusing unknown options with a hint, for the Cache and the HTTP cache.

const { ConfigError } = require('./errors.js')

// Levenshtein distance, for "did you mean" hints.
function distance(a, b) {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = cur
    }
  }
  return row[b.length]
}

/** Refuse an unknown option with ConfigError (E_CONFIG) naming it and the nearest known one. */
function checkOptions(o, known, what) {
  for (const k of Object.keys(o)) {
    if (known.includes(k)) continue
    let near = null
    let best = 3
    for (const n of known) {
      const d = distance(k.toLowerCase(), n.toLowerCase())
      if (d < best) [near, best] = [n, d]
    }
    throw new ConfigError(`unknown ${what} option ${JSON.stringify(k)}${near ? ` (did you mean ${near}?)` : ''}`)
  }
}

module.exports = { checkOptions }
