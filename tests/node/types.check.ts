// Compile-time checks of the shipped .d.ts files (`tsc -p tests/node`).
// Not executed: a type error here fails `make lint`.
import { Cache, KeyNotFoundError, StrataCacheError, type CacheOptions, type Ttl } from 'stratacache'

const options: CacheOptions = { redis: 'redis://127.0.0.1:6379', namespace: 'shop', l1: { maxBytes: 64 << 20 }, ttl: '5m' }
const cache = new Cache(options)
void new Cache({ redis: 'redis://127.0.0.1:6379', jsReads: false })

async function usage(): Promise<void> {
  const user = await cache.getOrSet({ key: 'user:1', factory: async () => ({ id: 1, name: 'Ada' }), ttl: '1m' })
  const id: number = user.id
  const maybe = await cache.get<{ id: number }>('user:1')
  if (maybe !== undefined) {
    const n: number = maybe.id
    void n
  }
  const ok: boolean = await cache.set('k', { a: 1 }, 60_000, { grace: '30s', tags: ['t'] })
  const failed: string[] = await cache.setMany([['a', 1], ['b', 'two']], '5m')
  const values: Array<unknown> = await cache.getMany(['a', 'b'])
  const count: number | bigint = await cache.incr('n', 2)
  const ttl: Ttl = null
  await cache.touch('k', ttl)
  cache.on('error', (e) => {
    const code: string = e.code
    void code
  })
  try {
    await cache.incr('missing')
  } catch (e) {
    if (e instanceof KeyNotFoundError && e instanceof StrataCacheError) {
      const code: string = e.code
      void code
    }
  }
  const stats: Record<string, number> = cache.stats()
  const text: string = cache.metrics()
  void [id, ok, failed, values, count, stats, text]
  await cache.close()
}
void usage

import { KeyvStratacache } from 'stratacache/keyv'

const store = new KeyvStratacache({ redis: 'redis://127.0.0.1:6379', namespace: 'keyv' })
async function keyvUsage(): Promise<void> {
  const ok: boolean = await store.set('k', 'v', 1000)
  const v: string | undefined = await store.get<string>('k')
  await store.clear()
  await store.disconnect()
  void [ok, v]
}
void keyvUsage

import { cached } from 'stratacache/express'
import express from 'express'
import stratacacheFastify from 'stratacache/fastify'

const middleware = cached({ cache, ttl: '1m', staleWhileRevalidate: '30s', vary: ['accept-language'], keyBy: () => 'user' })
// keyBy typed with the framework's request (issue: did not compile).
const typed = cached({ cache, sharedCookies: ['_ga'], keyBy: (req: { headers: Record<string, string | undefined> }) => req.headers.authorization ?? null })
// ... and with Express's own Request type.
const withExpress = cached({ cache, keyBy: (req: express.Request) => req.get('authorization') ?? null })
const app = express()
app.get('/me', withExpress, (req: express.Request, res: express.Response) => res.json({ ok: true }))
void typed
void middleware
void stratacacheFastify

import { PgListener } from 'stratacache/feed'

async function feedUsage(cache: Cache): Promise<number> {
  const l = await PgListener.start(cache, 'postgresql://postgres@127.0.0.1/postgres', { products: null, categories: ['category:{id}'] }, { pollInterval: '20ms' })
  const s = l.stats()
  await l.stop()
  return s.changes + s.lagMs + (s.active ? 1 : 0)
}
void feedUsage
