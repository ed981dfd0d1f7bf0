// One person on two devices: two fresh Chromium contexts (a phone and a
// laptop: no shared cookie or storage) identify with the same email on the
// real `affinity serve`; the person's merged profile and a per-person
// segment's export are one row with both devices' interests.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { buildBinary, Service, staticServer, stub, page, launch, newContext, waitQueueEmpty, visitorOf, sleep } from './harness.mjs'

const SITE = 'test'
const LEGO = { id: 'lego-1', brand: 'Lego', category: 'toys/bricks', price: 39.9 }
const DUPLO = { id: 'duplo-1', brand: 'Duplo', category: 'toys/bricks', age: '0-3', price: 19.9 }
const TOKEN = 'browser-test-token'

let bin, browser
before(async () => {
  bin = buildBinary()
  browser = await launch()
})
after(() => browser?.close())

const api = (svc, path, init = {}) =>
  fetch(svc.api + path, Object.assign({}, init, { headers: Object.assign({ Authorization: 'Bearer ' + TOKEN }, init.headers) }))

// poll calls fn until it returns a value, failing after timeout.
async function poll (what, fn, timeout = 20000) {
  const end = Date.now() + timeout
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > end) throw new Error('timed out waiting for ' + what)
    await sleep(100)
  }
}

test('two devices of one person: one merged profile, one per-person segment row with both interests', async t => {
  const svc = await new Service(bin, { sites: [SITE] }).start()
  const track = (p, email) => `affinity("view", ${JSON.stringify(p)});affinity("view", ${JSON.stringify(p)});affinity("identify", ${JSON.stringify(email)});`
  const web = await staticServer({
    '/phone': { html: page('<h1>phone</h1>', stub(svc.collector, SITE, track(LEGO, 'ann@example.com'))) },
    '/laptop': { html: page('<h1>laptop</h1>', stub(svc.collector, SITE, track(DUPLO, ' Ann@Example.COM '))) },
  })
  const phone = await newContext(browser)
  const laptop = await newContext(browser)
  t.after(async () => { svc.kill(); await phone.close(); await laptop.close(); await web.closeAll() })

  // Each device alone has 2 views: only the person reaches 3.
  const put = await api(svc, `/v1/segments/${SITE}/fans?per=person`, { method: 'PUT', body: 'count(view) >= 3 and interest(brand, "Lego") > 0 and interest(brand, "Duplo") > 0' })
  assert.equal(put.status, 201, await put.text())

  const visitors = []
  for (const [ctx, path] of [[phone, '/phone'], [laptop, '/laptop']]) {
    const pg = await ctx.newPage()
    await pg.goto(web.base + path)
    await waitQueueEmpty(pg)
    visitors.push(await visitorOf(pg))
  }
  assert.equal(visitors.length, 2)
  assert.notEqual(visitors[0], visitors[1], 'two contexts are two devices')

  const person = await poll('the merged profile of both devices', async () => {
    const r = await api(svc, `/v1/people/${SITE}/ann@example.com`)
    if (r.status !== 200) return null
    const p = await r.json()
    return p.visitors.length === 2 ? p : null
  })
  assert.deepEqual([...person.visitors].sort(), [...visitors].sort())
  const brands = person.interests.brand.map(b => b.value).sort()
  assert.deepEqual(brands, ['Duplo', 'Lego'])

  const row = await poll('the person in the per-person segment', async () => {
    const body = (await (await api(svc, `/v1/segments/${SITE}/fans/members`)).text()).trim()
    return body ? body.split('\n') : null
  })
  assert.equal(row.length, 1, 'one row per person: ' + row)
  const m = JSON.parse(row[0])
  assert.equal(m.email, 'ann@example.com')
  assert.deepEqual([...m.visitors].sort(), [...visitors].sort())
  assert.equal(m.facts['count(view)'], 4)
  assert.ok(m.facts['interest(brand, "Lego")'] > 0 && m.facts['interest(brand, "Duplo")'] > 0, JSON.stringify(m.facts))

  const csv = (await (await api(svc, `/v1/segments/${SITE}/fans/members?format=csv`)).text()).trim().split('\r\n')
  assert.equal(csv.length, 2, 'the header and one row: ' + csv)
  assert.ok(csv[1].includes(',ann@example.com,') && visitors.every(v => csv[1].includes(v)), csv[1])
  await svc.stop()
})
