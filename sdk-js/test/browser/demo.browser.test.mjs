// The demo shop of `affinity serve --demo`, clicked through in Chromium.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { buildBinary, Service, launch, newContext, waitQueueEmpty, visitorOf, checkout } from './harness.mjs'

let bin, browser
before(async () => {
  bin = buildBinary()
  browser = await launch()
})
after(() => browser?.close())

const NUTRILON_0_1 = ['nutrilon-1', 'nutrilon-2', 'nutrilon-porridge']

test('demo shop: clicking through Nutrilon 0-1 products puts Nutrilon on top of the live panel', async t => {
  const svc = await new Service(bin, { sites: ['demo'], demo: true }).start()
  const ctx = await newContext(browser)
  t.after(async () => { svc.kill(); await ctx.close() })
  const errors = []
  const pg = await ctx.newPage()
  pg.on('pageerror', e => errors.push(e.message))

  await pg.goto(svc.collector + '/demo/')
  await pg.click('#filters >> text=Nutrilon')
  await pg.click('#filters >> text=age 0-1')
  assert.deepEqual(await pg.$$eval('#grid .card', cs => cs.map(c => c.dataset.id)), NUTRILON_0_1)
  for (const id of NUTRILON_0_1) {
    await pg.click(`#grid .card[data-id="${id}"]`)
    await pg.waitForSelector('#add')
    await pg.click('#add')
    await pg.goBack()
    await pg.waitForSelector(`#grid .card[data-id="${id}"]`)
  }
  await checkout(pg, 'parent@example.com')
  await waitQueueEmpty(pg)
  const v = await visitorOf(pg)

  // The panel reads only this browser's own visitor.
  const other = await pg.evaluate(() => fetch('api/visitor?v=00000000-0000-4000-8000-000000000000').then(r => r.status))
  assert.equal(other, 403)

  // The live panel, fed by the query API of the same process.
  await pg.waitForSelector('#panel [data-dim="brand"], #pending', { timeout: 20000 })
  assert.equal(await pg.$('#pending'), null, 'the panel says the profile API is not served')
  await pg.waitForSelector('#panel[data-top-brand="Nutrilon"]', { timeout: 20000 })
  assert.equal(await pg.textContent('#panel [data-dim="brand"] li:first-child span'), 'Nutrilon')
  assert.equal(await pg.textContent('#panel [data-dim="age"] li:first-child span'), '0-1')
  assert.deepEqual(errors, [])

  // Delivery is at least once: a batch the snippet sent again after a slow
  // answer is in the log twice, under the same event ids (the builder
  // applies each id once), so the clicks are the distinct ids.
  const seen = new Set()
  const evs = (await svc.dump()).filter(e => e.v === v && !seen.has(e.id) && seen.add(e.id))
  const views = evs.filter(e => e.t === 'view')
  assert.deepEqual(views.map(e => e.product.id), NUTRILON_0_1)
  for (const e of views) {
    assert.equal(e.product.brand, 'Nutrilon')
    assert.equal(e.product.age, '0-1')
  }
  assert.deepEqual(evs.filter(e => e.t === 'cart').map(e => e.product.id), NUTRILON_0_1)
  assert.deepEqual(evs.filter(e => e.t === 'identify').map(e => e.email), ['parent@example.com'])
  const [purchase] = evs.filter(e => e.t === 'purchase')
  assert.deepEqual(purchase.order.items.map(i => [i.id, i.qty]), NUTRILON_0_1.map(id => [id, 1]))
  assert.equal(purchase.order.total, 53.47)
  // Filters are SPA routes: they send pageviews too.
  assert.ok(evs.some(e => e.t === 'pageview' && e.url.endsWith('/demo/?brand=Nutrilon&age=0-1')), 'no pageview of the filtered index')
})
