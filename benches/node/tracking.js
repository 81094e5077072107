// An awaited L1 hit before and after the first factory ran, with dependency
// tracking on (default) or off. One process per setting (promise hooks are
// process-wide once on).
const { Cache } = require(require('node:path').join(__dirname, '..', '..', 'node', 'index.js'))
const track = process.argv[2] !== 'off'
async function hits(c, n) {
  const t = process.hrtime.bigint()
  for (let i = 0; i < n; i++) await c.get('k')
  return Number(process.hrtime.bigint() - t) / n
}
;(async () => {
  const c = new Cache({ namespace: 'als', trackDependencies: track })
  await c.set('k', { id: 1, name: 'Ada', tags: ['a', 'b'] }, '1h')
  for (let r = 0; r < 3; r++) await hits(c, 200000)
  const med = (a) => a.sort((x, y) => x - y)[2].toFixed(0)
  const before = []
  for (let r = 0; r < 5; r++) before.push(await hits(c, 500000))
  await c.getOrSet({ key: 'p', factory: async () => 1, ttl: '1h' })
  const after = []
  for (let r = 0; r < 5; r++) after.push(await hits(c, 500000))
  console.log(`trackDependencies ${track}: await get() L1 hit ${med(before)} ns before the first factory, ${med(after)} ns after`)
  c.close()
})()
