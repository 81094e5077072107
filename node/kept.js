'use strict'
// What L1 hits keep, one per L1 entry (crates/node/src/kept.rs):
// - with `clone: false`, the decoded value, deep-frozen and shared by
//   every hit of the entry;
// - otherwise the entry's text (JSON or UTF-8 of at least 1 KiB, from
//   its third read on: kept sooner, text read once or twice churns V8's
//   old space), which each hit decodes into a copy of its own: the
//   entry's bytes are not made into a new JS string per hit.
// Each is kept beside the stamp the binding attached to the entry; a hit
// asks the binding for the stamp only, and the same stamp means the same
// entry, checked as any hit is (freshness, L1 trust, versions). What a
// Cache handle keeps is bounded by the L1 memo budget (a quarter of L1
// unless `l1.memoBytes` says otherwise), charged as the binding charges
// it; the oldest kept values go first. The binding charges each entry once
// against the same budget (what the first handle to keep it needs, grown
// when a handle needs more), so several handles on one L1 keep at most
// one budget's worth each.

/** No fresh entry in L1 (read on as `get` does). */
const MISS = Symbol('stratacache.kept.miss')

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

class KeptValues {
  /** key -> { stamp, charge, kept } */
  #kept = new Map()
  #bytes = 0
  #budget
  // true: decoded values shared by hits; false: entries' text.
  #share
  // The binding's `getKept(key, fetch)`, bound to the cache
  // (crates/node/src/reader.rs).
  #read
  // An entry as `getKept` shapes it -> its value.
  #decode

  /**
   * What the hits of the native cache `n` keep: their shared values
   * (`share`) or their text; `decode` makes an entry's value.
   */
  constructor(n, share, decode) {
    this.#budget = n.keptBudget
    this.#share = share
    this.#read = n.keptReader(share)
    this.#decode = decode
  }

  /**
   * The value of `key` from L1: shared, or decoded from kept text or the
   * entry's bytes; MISS when L1 has no fresh entry.
   */
  get(key) {
    // Shared values are looked up first: a value that cannot be shared
    // (a Buffer) is never kept, and fetching it here takes one call. Text
    // is looked up only for a stamped entry: short text is never stamped.
    let k = this.#share ? this.#kept.get(key) : undefined
    let r = this.#read(key, this.#share && k === undefined)
    if (typeof r === 'number') {
      if (!this.#share) k = this.#kept.get(key)
      if (k !== undefined && k.stamp === r) return this.#share ? k.kept : this.#decode(k.kept)
      // Not kept here (a new entry, another handle stamped it, or it was
      // let go): the entry, once more.
      r = this.#read(key, true)
    }
    if (r === null) return MISS
    // Not one this cache keeps (short text, bytes): its value, as read.
    if (typeof r === 'string' || r.length === 2) return this.#decode(r)
    const [stamp, v, charge] = r
    const value = this.#decode(v)
    if (stamp === 0) return value
    if (this.#share) {
      if (!freezable(value)) return value
      deepFreeze(value)
    }
    this.forget(key)
    this.#kept.set(key, { stamp, charge, kept: this.#share ? value : v })
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

module.exports = { KeptValues, MISS }
