'use strict'
// What the JS package takes from the core, checked against
// tests/vectors/constants.json (written by the core): value formats, error
// codes, and the defaults index.d.ts documents. The options themselves are
// passed through unset, so the core's defaults apply; this keeps the
// documentation honest.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { Format } = require('../../node/index.js')
const errors = require('../../node/errors.js')
const binding = require('../../node/binding.js')

const V = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'vectors', 'constants.json'), 'utf8'))

test('value formats are the core ids', () => {
  const want = Object.fromEntries(Object.entries(V.formats).map(([k, v]) => [k.toUpperCase(), v]))
  assert.deepEqual({ ...Format }, want)
})

test('every core error code has its own error class', () => {
  assert.deepEqual(binding.constants().errorCodes, V.error_codes)
  const seen = new Set()
  for (const code of V.error_codes) {
    const e = errors.fromNative(new Error(`[${code}] x`))
    assert.equal(e.code, code)
    assert.notEqual(e.constructor, errors.StrataCacheError, code)
    assert.ok(!seen.has(e.constructor), `${code} shares a class`)
    seen.add(e.constructor)
  }
  assert.deepEqual([...errors.L2_CODES], V.l2_error_codes)
})

/** The "Default ..." of the JSDoc right before `name?:` in `block`, in core units. */
function documented(block, name) {
  const at = block.indexOf(`\n  ${name}?:`)
  assert.ok(at > 0, `${name} is not in index.d.ts`)
  const doc = block.slice(block.lastIndexOf('/**', at), at)
  const m = /Default `?'?([\d.]+)\s*(MiB|ms|s|m)?'?`?/.exec(doc)
  assert.ok(m, `${name} documents no default`)
  const n = Number(m[1])
  const unit = { MiB: 1 << 20, ms: 1, s: 1000, m: 60_000 }[m[2]] || 1
  return n * unit
}

test('index.d.ts documents the core defaults', () => {
  const dts = fs.readFileSync(path.join(__dirname, '..', '..', 'node', 'index.d.ts'), 'utf8')
  const options = dts.slice(dts.indexOf('export interface CacheOptions'), dts.indexOf('export interface Policy'))
  const policy = dts.slice(dts.indexOf('export interface Policy'), dts.indexOf('export interface SetOptions'))
  const c = V.config_defaults
  const want = {
    l1: c.l1_max_bytes,
    ttl: c.default_ttl_ms,
    compressThreshold: c.compress_threshold,
    maxValueBytes: c.max_value_bytes,
    connectTimeout: c.connect_timeout_ms,
    opTimeout: c.op_timeout_ms,
    waitTimeout: c.wait_timeout_ms,
    tombstoneTtl: c.tombstone_ttl_ms,
    leaseTtl: c.lease_ttl_ms,
  }
  for (const [name, value] of Object.entries(want)) assert.equal(documented(options, name), value, name)
  assert.equal(documented(policy, 'waitTimeout'), c.wait_timeout_ms)
  assert.equal(documented(policy, 'failSafeThrottle'), V.policy_defaults.fail_safe_throttle_ms)
  const breaker = /threshold` \((\d+)\).*`cooldown` \((\d+) ms\)/.exec(options)
  assert.deepEqual([Number(breaker[1]), Number(breaker[2])], [c.breaker_threshold, c.breaker_cooldown_ms])
  assert.match(options, new RegExp(`Default \`'${c.namespace}'\``))
  // The default stated in the doc comment just above the option.
  assert.equal(/Default `(\w+)`[^/]*\*\/\s*trackDependencies\?:/.exec(options)?.[1], String(c.track_dependencies), 'trackDependencies')
})
