'use strict'
// Error classes of stratacache. Every error has a stable `code` (the same
// string the Python package exposes), so code can branch on `err.code`.

class StrataCacheError extends Error {
  constructor(message, code = 'E_STRATACACHE', options) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

const CLASSES = {}
function define(name, code, Base = StrataCacheError) {
  const cls = {
    [name]: class extends Base {
      constructor(message, options) {
        super(message, options)
        this.code = code
      }
    },
  }[name]
  CLASSES[code] = cls
  return cls
}

const ConfigError = define('ConfigError', 'E_CONFIG')
const InvalidKeyError = define('InvalidKeyError', 'E_INVALID_KEY')
const ValueTooLargeError = define('ValueTooLargeError', 'E_VALUE_TOO_LARGE')
const InvalidValueError = define('InvalidValueError', 'E_INVALID_VALUE')
const RedisError = define('RedisError', 'E_L2')
const RedisUnavailableError = define('RedisUnavailableError', 'E_L2_UNAVAILABLE', RedisError)
const RedisTimeoutError = define('RedisTimeoutError', 'E_L2_TIMEOUT', RedisError)
const KeyNotFoundError = define('KeyNotFoundError', 'E_NOT_FOUND')
const NotAnIntegerError = define('NotAnIntegerError', 'E_NOT_INTEGER')
const LoaderError = define('LoaderError', 'E_LOADER')
const LeaseDroppedError = define('LeaseDroppedError', 'E_LEASE_DROPPED')
const WaitTimeoutError = define('WaitTimeoutError', 'E_WAIT_TIMEOUT')
const LoaderTimeoutError = define('LoaderTimeoutError', 'E_LOADER_TIMEOUT')
const CacheClosedError = define('CacheClosedError', 'E_CLOSED')

// The core's Redis (L2) error codes: what fail-open swallows.
const L2_CODES = new Set(require('./binding.js').constants().l2ErrorCodes)

// Native errors arrive as "[E_CODE] message" (or "[E_LOADER:<id>] ...").
const NATIVE = /^\[(E_[A-Z0-9_]+)(?::(\d+))?\] ?([\s\S]*)$/

/** Turn an error thrown by the native binding into a stratacache error. */
function fromNative(err, loaderErrors) {
  const m = err && typeof err.message === 'string' ? NATIVE.exec(err.message) : null
  if (!m) return err
  const [, code, id, message] = m
  if (code === 'E_LOADER' && id !== undefined && loaderErrors && loaderErrors.has(Number(id))) {
    return loaderErrors.get(Number(id))
  }
  const Cls = CLASSES[code] || StrataCacheError
  return Cls === StrataCacheError ? new StrataCacheError(message, code) : new Cls(message)
}

module.exports = {
  StrataCacheError,
  ConfigError,
  InvalidKeyError,
  ValueTooLargeError,
  InvalidValueError,
  RedisUnavailableError,
  RedisTimeoutError,
  RedisError,
  KeyNotFoundError,
  NotAnIntegerError,
  LoaderError,
  LeaseDroppedError,
  WaitTimeoutError,
  LoaderTimeoutError,
  CacheClosedError,
  L2_CODES,
  fromNative,
}
