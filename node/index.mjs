// ESM entry point: the same implementation as the CommonJS one.
import cjs from './index.js'

export const {
  Cache,
  disabled,
  Loaded,
  NoCache,
  Format,
  metricsText,
  parseTtl,
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
} = cjs
export default cjs
