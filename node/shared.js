'use strict'
// Hits that share one value per L1 entry (`new Cache({ clone: false })`).
// Each entry read is decoded once, deep-frozen and kept here beside the
// stamp the binding attached to the entry (crates/node/src/shared.rs); a
// hit asks the binding for the stamp only, and the same stamp means the
// same entry, checked as any hit is (freshness, L1 trust, versions). What
// is kept is bounded by the L1 memo budget (a quarter of L1), charged
// as the binding charges it (four times the payload, and a slot); the
// oldest kept values go first.

/** No fresh entry in L1 (read on as `get` does). */
const MISS = Symbol('stratacache.shared.miss')

/**
 * Whether `v` can be frozen all the way down: plain objects and arrays of
 * them. A Buffer, typed array, ArrayBuffer, Map, Set or Date (the v8
 * serializer gives them) keeps mutable contents under Object.freeze:
 * such a value is not shared.
 */
function freezable(v, seen = new Set()) {
  if (v === null || typeof v !== 'object' || seen.has(v)) return true
  if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer || v instanceof Map || v instanceof Set || v instanceof Date) return false
  seen.add(v)
  for (const k of Object.keys(v)) if (!freezable(v[k], seen)) return false
  return true
}

/** Freeze `v` all the way down (`freezable(v)` must hold). */
function deepFreeze(v) {
  if (v === null || typeof v !== 'object' || Object.isFrozen(v)) return
  Object.freeze(v)
  for (const k of Object.keys(v)) deepFreeze(v[k])
}

class SharedValues {
  /** key -> { stamp, charge, value } */
  #kept = new Map()
  #bytes = 0
  #budget
  // The binding's `getShared(key, known)`, bound to the cache
  // (crates/node/src/reader.rs).
  #getShared

  /** The values shared by the hits of the native cache `n`. */
  constructor(n) {
    this.#budget = n.sharedBudget
    this.#getShared = n.sharedReader()
  }

  /**
   * The value of `key` from L1, `decode`d from the entry's bytes only
   * when this entry was not seen before; MISS when L1 has no fresh entry.
   */
  get(key, decode) {
    const k = this.#kept.get(key)
    const r = this.#getShared(key, k === undefined ? 0 : k.stamp)
    if (r === null) return MISS
    if (typeof r === 'number') return k.value
    const [stamp, v] = r
    const value = decode(v)
    if (stamp === 0 || !freezable(value)) return value
    deepFreeze(value)
    if (k !== undefined) this.forget(key)
    const data = typeof v === 'string' ? v : v[1]
    const charge = 4 * data.length + 64
    this.#kept.set(key, { stamp, charge, value })
    this.#bytes += charge
    for (const [old, o] of this.#kept) {
      if (this.#bytes <= this.#budget) break
      this.#kept.delete(old)
      this.#bytes -= o.charge
    }
    return value
  }

  /** Stop keeping `key`'s value (written or deleted here). */
  forget(key) {
    const k = this.#kept.get(key)
    if (k === undefined) return
    this.#kept.delete(key)
    this.#bytes -= k.charge
  }

  clear() {
    this.#kept.clear()
    this.#bytes = 0
  }
}

module.exports = { SharedValues, MISS }
