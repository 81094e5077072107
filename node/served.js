'use strict'
// How a call was served, for the tracing wrappers (channels.js, otel.js).
// A wrapper hands the call an object (`expect`) right before calling it;
// the call takes it as its first step (`take`), synchronously, so no other
// call can take it, and notes on it where it answers (`note`): `outcome`
// ('hit', 'waited', 'stale', 'loaded') and a hit's `tier` ('l1', 'l2').
// The vocabulary and the codes the binding gives are the core's
// (`stratacache::Served`, `constants().served`). Untraced, a call pays one
// read of the slot.

const binding = require('./binding.js')

/** By code: `[outcome, tier | null]`. */
const SERVED = binding.constants().served
const [L1, L2, WAITED, STALE, LOADED] = ['l1', 'l2', 'waited', 'stale', 'loaded'].map((w) =>
  SERVED.findIndex(([o, t]) => t === w || (t === null && o === w)),
)

/** @type {Record<string, unknown> | undefined} */
let pending

/** Hand `obs` to the call made next, on this turn. @param {Record<string, unknown>} obs */
function expect(obs) {
  pending = obs
}

/** The observer handed to this call, if any (and no other call's). */
function take() {
  const obs = pending
  pending = undefined
  return obs
}

/**
 * Note on `obs` (if any) that the call was served as `code` says.
 * @param {Record<string, unknown> | undefined} obs
 * @param {number} code
 */
function note(obs, code) {
  if (obs === undefined) return
  const s = SERVED[code]
  if (s === undefined || s[0] === '') return
  obs.outcome = s[0]
  if (s[1] !== null) obs.tier = s[1]
}

module.exports = { expect, take, note, L1, L2, WAITED, STALE, LOADED }
