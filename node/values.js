'use strict'
// Values as the core stores them: the serializer ids shared with Python
// (checked against tests/vectors/constants.json), the serializers, and
// encoding / decoding by the format an entry records.

const v8 = require('node:v8')
const errors = require('./errors.js')

const { InvalidValueError } = errors

/** Serializer ids shared with the Python package (see docs/architecture.md). */
const Format = Object.freeze({ RAW: 0, PICKLE: 1, JSON: 2, MSGPACK: 3, V8: 4, INT: 5, UTF8: 6 })
const JSON_FORMATS = Object.freeze([Format.RAW, Format.JSON, Format.INT, Format.UTF8])
const V8_FORMATS = Object.freeze([...JSON_FORMATS, Format.V8])
const I64_MIN = -(2n ** 63n)
const I64_MAX = 2n ** 63n - 1n

const serializers = {
  json: {
    name: 'json',
    encode(value) {
      const s = JSON.stringify(value)
      if (s === undefined) throw new InvalidValueError(`cannot store ${typeof value} as JSON`)
      // The text itself: the binding takes a string as UTF-8 bytes, and a
      // Buffer made here would cost more than the stringify.
      return [s, Format.JSON]
    },
  },
  v8: {
    name: 'v8',
    encode(value) {
      try {
        return [v8.serialize(value), Format.V8]
      } catch (e) {
        throw new InvalidValueError(`cannot serialize value with v8.serialize: ${e.message}`, { cause: e })
      }
    },
  },
  raw: {
    name: 'raw',
    encode(value) {
      if (Buffer.isBuffer(value) || value instanceof Uint8Array) return [Buffer.from(value), Format.RAW]
      if (typeof value === 'string') return [value, Format.UTF8]
      throw new InvalidValueError('the raw serializer stores Buffers and strings')
    },
  },
}

function encode(serializer, value) {
  if (value === undefined) throw new InvalidValueError('undefined cannot be cached (it means "missing")')
  // Integers use the counter form: atomic incr/decr in Redis, numbers in Python.
  if (typeof value === 'number' && Number.isSafeInteger(value)) return [String(value), Format.INT]
  if (typeof value === 'bigint' && value >= I64_MIN && value <= I64_MAX) return [String(value), Format.INT]
  try {
    return serializer.encode(value)
  } catch (e) {
    // A BigInt or a cycle for JSON, a user serializer's own error: typed.
    if (e instanceof errors.StrataCacheError) throw e
    throw new InvalidValueError(`the ${serializer.name} serializer cannot encode this value: ${e && e.message}`, { cause: e })
  }
}

/** The stored bytes of an entry as `getLocal` shapes it (HTTP entries are raw). */
function entryBytes(v) {
  const data = typeof v === 'string' ? v : v[1]
  return typeof data === 'string' ? Buffer.from(data) : data
}

// Decode by the format recorded in the entry; formats this process does
// not trust or understand (pickle, msgpack) are a miss, never guessed at.
function decode(v, serializerName) {
  if (!v) return undefined
  // JSON text (the common case), `[format, data]` (data may be a string),
  // or `{ format, data }`.
  if (typeof v === 'string') return JSON.parse(v)
  const format = Array.isArray(v) ? v[0] : v.format
  const data = Array.isArray(v) ? v[1] : v.data
  if (typeof data === 'string') {
    if (format === Format.INT) {
      const n = Number(data)
      return Number.isSafeInteger(n) ? n : BigInt(data)
    }
    return format === Format.JSON ? JSON.parse(data) : data
  }
  switch (format) {
    case Format.INT: {
      const n = Number(data.toString())
      return Number.isSafeInteger(n) ? n : BigInt(data.toString())
    }
    case Format.JSON:
      return JSON.parse(data.toString())
    case Format.UTF8:
      return data.toString()
    case Format.RAW:
      return Buffer.from(data)
    case Format.V8:
      return serializerName === 'v8' ? v8.deserialize(data) : undefined
    default:
      return undefined
  }
}

module.exports = { Format, JSON_FORMATS, V8_FORMATS, serializers, encode, decode, entryBytes }
