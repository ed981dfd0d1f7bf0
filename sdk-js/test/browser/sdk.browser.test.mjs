// The snippet in a real headless Chromium against the real `affinity serve`
// binary. Every assertion on delivery reads what the event log durably holds
// (affinity dump-log after a clean stop), by event id.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import {
  buildBinary, Service, staticServer, stub, page, launch, newContext, queue, waitQueueEmpty,
  visitorOf, readDist, sleep,
} from './harness.mjs'

const SITE = 'test'
const P1 = { id: 'nutrilon-1', brand: 'Nutrilon', category: 'baby/food/formula', age: '0-1', price: 24.99 }
const P2 = { id: 'merries-nb', brand: 'Merries', category: 'baby/diapers', age: '0-1', price: 17.9 }

let bin, browser
before(async () => {
  bin = buildBinary()
  browser = await launch()
})
after(async () => {
  await browser?.close()
})

// setup starts a fresh service and a static server for pages(collector).
async function setup (t, pages, opts) {
  const svc = await new Service(bin, opts).start()
  const web = await staticServer(pages(svc.collector))
  const ctx = await newContext(browser)
  t.after(async () => { svc.kill(); await ctx.close(); await web.closeAll() })
  return { svc, web, ctx }
}

const byType = (evs, t) => evs.filter(e => e.t === t)
const ids = evs => evs.map(e => e.id)
const sentIds = ctx => ctx.sent.flatMap(r => (r.body?.events || []).map(e => e.id))

test('the served sdk.js is the npm build, with long cache headers and an ETag', async t => {
  const { svc } = await setup(t, () => ({}))
  const r = await fetch(svc.collector + '/sdk.js', { headers: { 'Accept-Encoding': 'identity' } })
  assert.equal(r.status, 200)
  assert.deepEqual(Buffer.from(await r.arrayBuffer()), readDist(), 'GET /sdk.js differs from dist/sdk.js (npm run build)')
  assert.match(r.headers.get('cache-control'), /public, max-age=(\d+)/)
  assert.ok(+/max-age=(\d+)/.exec(r.headers.get('cache-control'))[1] >= 86400)
  const etag = r.headers.get('etag')
  assert.match(etag, /^"[0-9a-f]+"$/)
  const r2 = await fetch(svc.collector + '/sdk.js', { headers: { 'If-None-Match': etag, 'Accept-Encoding': 'identity' } })
  assert.equal(r2.status, 304)
})

test('calls queued before load are delivered; every event type arrives with its fields', async t => {
  const calls = `
affinity("view", ${JSON.stringify(P1)});
affinity("cart", ${JSON.stringify(P1)});
affinity("uncart", {id: "nutrilon-1", qty: 1});
affinity("purchase", {order_id: "o-1", total: 42.89, items: [Object.assign({qty: 1}, ${JSON.stringify(P2)}), {id: "x-2", qty: 3}]});
affinity("identify", "Mum@Example.com", {child_birthday: "2026-03-01", kids: 2, newsletter: true, skip: {no: 1}});
window.queuedBeforeLoad = !affinity.l && affinity.q.length;`
  const { svc, web, ctx } = await setup(t, c => ({ '/shop': { html: page('<h1>shop</h1>', stub(c, SITE, calls)) } }))
  const pg = await ctx.newPage()
  await pg.goto(web.base + '/shop')
  await waitQueueEmpty(pg)
  assert.equal(await pg.evaluate(() => window.queuedBeforeLoad), 6, 'the calls were not queued in the stub')
  const v = await visitorOf(pg)
  const evs = await svc.dump()

  assert.deepEqual(evs.map(e => e.t), ['pageview', 'view', 'cart', 'uncart', 'purchase', 'identify'])
  assert.deepEqual(ids(evs).sort(), sentIds(ctx).sort(), 'the log holds other ids than the ones sent')
  for (const e of evs) {
    assert.equal(e.site, SITE)
    assert.equal(e.v, v, 'visitor id is not the _aff_v cookie')
    assert.equal(e.url, web.base + '/shop')
    assert.ok(Math.abs(e.ts - e.recv) < 60000, `ts ${e.ts} far from recv ${e.recv}`)
  }
  assert.deepEqual(byType(evs, 'view')[0].product, P1)
  assert.deepEqual(byType(evs, 'cart')[0].product, P1)
  assert.deepEqual(byType(evs, 'uncart')[0].product, { id: 'nutrilon-1', qty: 1 })
  assert.deepEqual(byType(evs, 'purchase')[0].order, { id: 'o-1', total: 42.89, items: [Object.assign({ qty: 1 }, P2), { id: 'x-2', qty: 3 }] })
  const idf = byType(evs, 'identify')[0]
  assert.equal(idf.email, 'Mum@Example.com')
  assert.deepEqual(idf.traits, { child_birthday: '2026-03-01', kids: 2, newsletter: true })
  assert.equal(new Set(ids(evs)).size, evs.length, 'an event id is stored twice')
})

test('SPA route changes (pushState, replaceState, popstate) send pageviews', async t => {
  const { svc, web, ctx } = await setup(t, c => ({ '/spa': { html: page('<h1>spa</h1>', stub(c, SITE)) } }))
  const pg = await ctx.newPage()
  await pg.goto(web.base + '/spa')
  await waitQueueEmpty(pg)
  await pg.evaluate(() => new Promise(resolve => {
    history.pushState({}, '', '/spa/a')
    history.replaceState({}, '', '/spa/b')
    history.replaceState({}, '', '/spa/b') // same URL: no second pageview
    addEventListener('popstate', () => setTimeout(resolve), { once: true })
    history.back()
  }))
  await waitQueueEmpty(pg)
  const evs = await svc.dump()
  assert.deepEqual(evs.map(e => [e.t, e.url.slice(web.base.length)]),
    [['pageview', '/spa'], ['pageview', '/spa/a'], ['pageview', '/spa/b'], ['pageview', '/spa']])
})

test('events tracked just before navigating away arrive by beacon', async t => {
  const { svc, web, ctx } = await setup(t, c => ({
    '/p': { html: page('<h1>product</h1>', stub(c, SITE)) },
    '/plain': { html: page('<h1>no snippet here</h1>') },
  }))
  const pg = await ctx.newPage()
  // Playwright does not see requests of an unloading page: record the
  // snippet's sendBeacon calls in sessionStorage, which the next page of
  // this origin can read.
  await pg.addInitScript(() => {
    const send = navigator.sendBeacon.bind(navigator)
    navigator.sendBeacon = (url, data) => {
      const ok = send(url, data)
      const log = JSON.parse(sessionStorage.getItem('beacons') || '[]')
      log.push({ url, data, ok })
      sessionStorage.setItem('beacons', JSON.stringify(log))
      return ok
    }
  })
  await pg.goto(web.base + '/p')
  await waitQueueEmpty(pg)
  // Batched for 1 s, so only the pagehide beacon can send them.
  const pending = await pg.evaluate(([p, plain]) => {
    affinity('view', p)
    affinity('cart', p)
    const q = JSON.parse(localStorage.getItem('_aff_q'))
    location.href = plain
    return q.map(e => e.id)
  }, [P2, web.base + '/plain'])
  await pg.waitForURL(web.base + '/plain')
  assert.equal(pending.length, 2)
  await svc.waitAccepted(3)
  const beacons = await pg.evaluate(() => JSON.parse(sessionStorage.getItem('beacons') || '[]'))
  assert.deepEqual(beacons.map(b => [b.url, b.ok]), [[svc.collector + '/v1/events', true]])
  assert.deepEqual(JSON.parse(beacons[0].data).events.map(e => e.id).sort(), [...pending].sort(), 'the events did not leave by sendBeacon')
  assert.equal(ctx.sent.length, 1, 'a fetch, not only the first pageview, went out')
  const evs = await svc.dump()
  assert.deepEqual(evs.map(e => e.t), ['pageview', 'view', 'cart'])
  assert.deepEqual(ids(evs).slice(1).sort(), [...pending].sort())
  assert.deepEqual(evs[1].product, P2)
})

test('collector down: events wait in localStorage, survive a reload, arrive once it is back, each exactly once', async t => {
  const { svc, web, ctx } = await setup(t, c => ({ '/shop': { html: page('<h1>shop</h1>', stub(c, SITE)) } }))
  const pg = await ctx.newPage()
  await pg.goto(web.base + '/shop') // sdk.js is now in the HTTP cache (max-age 1 day)
  await waitQueueEmpty(pg)
  await svc.stop()

  const failed = ctx.sent.length
  await pg.evaluate(p => { affinity('view', p); affinity('cart', p) }, P1)
  // The batch goes out after ≤ 1 s and fails: connection refused.
  await waitFor(() => ctx.sent.slice(failed).some(r => r.status === -1), 'a failed fetch')
  const kept = await queue(pg)
  assert.equal(kept.length, 2, 'the events are not kept in localStorage')

  // A new page load, the collector still down: the queue survives it and
  // the new pageview joins it. sdk.js comes from the cache.
  await pg.goto(web.base + '/shop')
  await waitFor(async () => (await queue(pg)).length === 3, 'the reloaded page queueing its pageview')
  const pendingIds = ids(await queue(pg))
  assert.deepEqual(pendingIds.slice(0, 2), ids(kept), 'the reload lost or reordered the queue')

  await svc.start() // same address
  await waitQueueEmpty(pg, 20000)
  const evs = await svc.dump()
  assert.deepEqual(evs.map(e => e.t), ['pageview', 'view', 'cart', 'pageview'])
  for (const id of pendingIds) assert.equal(evs.filter(e => e.id === id).length, 1, `event ${id} stored ${evs.filter(e => e.id === id).length} times`)
  assert.equal(new Set(ids(evs)).size, evs.length, 'an event id is stored twice')
  const retried = ctx.sent.filter(r => r.body?.events.some(e => e.id === pendingIds[0]))
  assert.ok(retried.length >= 2, 'the event was not retried')
})

test('collector answering 503: the same ids are retried after reloads until accepted, each stored once', async t => {
  let down = true
  let svc
  const proxy = http.createServer((req, res) => {
    const cors = { 'Access-Control-Allow-Origin': req.headers.origin || '*', 'Access-Control-Expose-Headers': 'Retry-After' }
    if (down) return res.writeHead(503, Object.assign({ 'Retry-After': '1', 'Content-Type': 'text/plain' }, cors)).end('log_unavailable\n')
    const up = http.request(svc.collector + req.url, { method: req.method, headers: req.headers }, r => {
      res.writeHead(r.statusCode, r.headers)
      r.pipe(res)
    })
    up.on('error', () => res.writeHead(502).end())
    req.pipe(up)
  })
  await new Promise(resolve => proxy.listen(0, '127.0.0.1', resolve))
  const endpoint = 'http://127.0.0.1:' + proxy.address().port
  t.after(() => new Promise(resolve => { proxy.closeAllConnections(); proxy.close(resolve) }))
  let web, ctx
  ;({ svc, web, ctx } = await setup(t, c => ({ '/shop': { html: page('<h1>shop</h1>', stub(c, SITE, `affinity("view", ${JSON.stringify(P1)})`, { endpoint })) } })))
  const pg = await ctx.newPage()
  await pg.goto(web.base + '/shop')
  await waitFor(() => ctx.sent.some(r => r.status === 503), 'a 503')
  const first = ids(await queue(pg))
  assert.equal(first.length, 2)
  await pg.reload()
  await waitFor(() => ctx.sent.filter(r => r.status === 503).length >= 2, 'the resend after reload')
  const pendingIds = ids(await queue(pg))
  assert.deepEqual(pendingIds.slice(0, 2), first)
  assert.equal(pendingIds.length, 4, "want the first page's two events and the second's")
  down = false
  await waitQueueEmpty(pg, 20000)
  const evs = await svc.dump()
  assert.deepEqual(ids(evs).sort(), [...pendingIds].sort())
  for (const r of ctx.sent.filter(r => r.status === 503)) {
    for (const e of r.body.events) assert.ok(pendingIds.includes(e.id), 'a retry carried a new id')
  }
})

test('Do Not Track, Global Privacy Control and consent(false): nothing is sent or stored', async t => {
  const track = `affinity("view", ${JSON.stringify(P1)});affinity("identify","a@b.example");`
  const { svc, web, ctx } = await setup(t, c => ({
    '/dnt': { html: page('dnt', stub(c, SITE, track)) },
    '/optout': { html: page('optout', stub(c, SITE, track + 'affinity("consent", false);')) },
    '/control': { html: page('control', stub(c, SITE)) },
    '/plain': { html: page('plain') },
  }))
  const visit = async (path, init) => {
    const pg = await ctx.newPage()
    if (init) await pg.addInitScript(init)
    await pg.goto(web.base + path)
    await pg.waitForFunction(() => window.affinity && window.affinity.l)
    await pg.evaluate(p => affinity('cart', p), P2)
    // Leave: a pending event would go out by beacon now.
    await pg.goto(web.base + '/plain')
    const stored = await pg.evaluate(() => Object.keys(localStorage).filter(k => k.startsWith('_aff_')).length + document.cookie)
    await pg.close()
    return stored
  }
  assert.equal(await visit('/dnt', () => Object.defineProperty(Navigator.prototype, 'doNotTrack', { get: () => '1' })), '0')
  assert.equal(await visit('/dnt', () => Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true })), '0')
  // consent(false) remembers the opt-out (_aff_o) and nothing else.
  assert.equal(await visit('/optout'), '1')
  assert.deepEqual(ctx.sent, [], 'a request reached the collector')
  // The control: the same context, opted back in, does send.
  const pg = await ctx.newPage()
  await pg.goto(web.base + '/control')
  await pg.evaluate(() => affinity('consent', true))
  await waitQueueEmpty(pg)
  const evs = await svc.dump()
  assert.deepEqual(evs.map(e => [e.t, e.url]), [['pageview', web.base + '/control']])
})

test('a page with a strict CSP and a page that throws still track', async t => {
  const nonce = 'n0nce42'
  let csp
  const { svc, web, ctx } = await setup(t, c => {
    csp = `default-src 'none'; script-src 'nonce-${nonce}' ${c}; connect-src ${c}; img-src ${c}`
    return {
      '/csp': {
        html: page('<h1>strict</h1>', `<script nonce="${nonce}">window.violations=[];addEventListener('securitypolicyviolation',e=>violations.push(e.violatedDirective+' '+e.blockedURI))</script>` +
          stub(c, SITE, `affinity("view", ${JSON.stringify(P1)})`, { nonce })),
        headers: { 'Content-Security-Policy': csp },
      },
      '/throws': {
        html: page('<h1>broken page</h1>',
          '<script>throw new Error("page bug 1")</script>' +
          stub(c, SITE, `affinity("view", ${JSON.stringify(P2)});
affinity("identify", {toString() { throw new Error("snippet must swallow this") }});
affinity("purchase", {order_id: "o", items: 5});
affinity("no-such-command", 1);
setTimeout(() => { throw new Error("page bug 2") });
Promise.reject(new Error("page bug 3"));`) +
          '<script>undefinedFunction()</script>'),
      },
    }
  })
  const errors = []
  const pg = await ctx.newPage()
  pg.on('pageerror', e => errors.push(e.message))
  pg.on('console', m => m.type() === 'error' && errors.push('console: ' + m.text()))
  await pg.goto(web.base + '/csp')
  await waitQueueEmpty(pg)
  assert.deepEqual(await pg.evaluate(() => window.violations), [], 'the snippet needed more than the CSP allows')
  assert.deepEqual(errors, [])

  await pg.goto(web.base + '/throws')
  await waitQueueEmpty(pg)
  await waitFor(() => errors.length >= 4, 'the page errors')
  assert.deepEqual(errors.sort(), ['page bug 1', 'page bug 2', 'page bug 3', 'undefinedFunction is not defined'])
  const evs = await svc.dump()
  assert.deepEqual(evs.map(e => [e.t, e.url.slice(web.base.length)]),
    [['pageview', '/csp'], ['view', '/csp'], ['pageview', '/throws'], ['view', '/throws']])
  assert.deepEqual(evs[3].product, P2)
})

async function waitFor (cond, what, timeout = 15000) {
  const end = Date.now() + timeout
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out waiting for ' + what)
    await sleep(50)
  }
}
