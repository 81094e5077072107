'use strict'
// Shared helpers: Redis locations come from scripts/with-redis.sh (`make test`).
const crypto = require('node:crypto')

const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379'
const CLUSTER = process.env.STRATACACHE_CLUSTER
if (!CLUSTER) throw new Error('STRATACACHE_CLUSTER is not set: run the tests with `make test`')

const CONFIGS = {
  l1: {},
  redis: { redis: REDIS_URL },
  cluster: { cluster: CLUSTER.split(',') },
}

function unique(prefix) {
  return `${prefix}-${crypto.randomBytes(6).toString('hex')}`
}

module.exports = { REDIS_URL, CLUSTER, CONFIGS, unique }
