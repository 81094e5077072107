'use strict'
// What the factory running here reads: the collector (a NativeDeps) that
// tracked reads (get, getMany, a nested getOrSet, dependsOn) record into,
// so the value it builds depends on them (see the core's `deps`).
// Promises and callbacks started inside a factory inherit it.

const { AsyncLocalStorage } = require('node:async_hooks')
const { NativeDeps } = require('./binding.js')

const storage = new AsyncLocalStorage()

/** The current load's collector, or undefined outside a factory. */
function currentDeps() {
  return storage.getStore()
}

/** Run `fn` as a load collecting into a new collector; `[collector, fn()]`. */
function tracked(fn) {
  const deps = new NativeDeps()
  return [deps, storage.run(deps, fn)]
}

/** Run `fn` with `deps` as the current collector. */
function within(deps, fn) {
  return storage.run(deps, fn)
}

module.exports = { currentDeps, tracked, within, NativeDeps }
