'use strict'
// What L1 hits keep, one per L1 entry (crates/node/src/kept.rs):
// - with `clone: false`, the decoded value, deep-frozen and shared by
//   every hit of the entry;
// - otherwise the entry's text (JSON or UTF-8 of at least 128 bytes, from
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
  /** key -> { stamp, charge, kept, slot, global, word, left } */
  #kept = new Map()
  #bytes = 0
  #budget
  // true: decoded values shared by hits; false: entries' text.
  #share
  // The binding's `getKept(key, fetch, hits)`, bound to the cache
  // (crates/node/src/reader.rs).
  #read
  // This reader's watch board (u32 words the binding moves whenever an
  // answer may have changed: [0] for all keys, [slot] for a stripe of
  // them) and how long its last answer holds ([hits to serve before
  // asking again (0: ask every hit), slot, global, word]); null where the runtime refuses buffers over native memory
  // (then every hit asks the binding).
  #words = null
  #hold = null
  // Hits served here and not yet counted by the binding.
  #hits = 0
  // An entry as `getKept` shapes it -> its value.
  #decode

  /**
   * What the hits of the native cache `n` keep: their shared values
   * (`share`) or their text; `decode` makes an entry's value.
   */
  constructor(n, share, decode) {
    this.#budget = n.keptBudget
    this.#share = share
    const [read, words, hold] = n.keptReader(share)
    this.#read = read
    if (words !== null && hold !== null) {
      this.#words = new Uint32Array(words)
      this.#hold = new Float64Array(hold)
    }
    this.#decode = decode
  }

  /**
   * The value of `key` from L1: shared, or decoded from kept text or the
   * entry's bytes; MISS when L1 has no fresh entry.
   */
  get(key) {
    let k = this.#kept.get(key)
    if (k !== undefined && --k.left > 0) {
      // The answer the binding gave holds while the words it was judged
      // with are unchanged: the binding moves one after any change, and
      // the global one once its deadline has passed (stratacache::watch).
      // No clock is read here: Date.now() costs about what the rest does.
      // Plain loads, not Atomics.load (10-20 ns more a hit): aligned u32
      // reads never tear, and whatever lets this thread learn of a change
      // made elsewhere (a call into the binding, a message, a turn of the
      // event loop) also makes V8 read the words again; the every-16th
      // call bounds, per key, how long even a hit loop that never yields
      // (or spins on an Atomics.load of its own) serves what another
      // thread has since changed.
      const w = this.#words
      if (w[0] === k.global && w[k.slot] === k.word) {
        this.#hits++
        return this.#share ? k.kept : this.#decode(k.kept)
      }
    }
    let r = this.#read(key, k === undefined, this.#hits)
    this.#hits = 0
    if (typeof r === 'number') {
      if (k !== undefined && k.stamp === r) {
        this.#held(k)
        return this.#share ? k.kept : this.#decode(k.kept)
      }
      // Not kept here (another handle stamped it, or it was let go): the
      // entry, once more.
      r = this.#read(key, true)
    }
    if (r === null) {
      if (k !== undefined) this.forget(key)
      return MISS
    }
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
    k = { stamp, charge, kept: this.#share ? value : v, slot: 0, global: 0, word: 0, left: 0 }
    this.#held(k)
    this.#kept.set(key, k)
    this.#bytes += charge
    for (const [old, o] of this.#kept) {
      if (this.#bytes <= this.#budget) break
      this.#kept.delete(old)
      this.#bytes -= o.charge
    }
    return value
  }

  // How long the binding's last answer, `k`'s, holds (not at all without
  // a board, or for 0 hits: judged by the binding on every hit).
  #held(k) {
    const h = this.#hold
    if (h === null) return
    k.left = h[0]
    k.slot = h[1]
    k.global = h[2]
    k.word = h[3]
  }

  /** Hits served here since the binding last counted them. */
  takeHits() {
    const n = this.#hits
    this.#hits = 0
    return n
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
