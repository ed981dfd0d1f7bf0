// End-to-end behaviour of the bundled snippet in a fake browser (testkit/fake-browser.mjs):
// loader replay, init, batching, wire format, acknowledgement and retries,
// beacons, persistence across reloads, consent and Do Not Track, SPA pageviews.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { makeBrowser, tick } from '../testkit/fake-browser.mjs'

const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
const STUB = 'window.affinity=window.affinity||function(){(affinity.q=affinity.q||[]).push(arguments)};'

const ready = async (opts, init = { site: 'pk_test' }) => {
  const p = makeBrowser(opts)
  p.run(STUB)
  p.api('init', init)
  await p.load()
  return p
}

test('nothing is sent or stored before init; the stub queue is replayed in order on load', async () => {
  const p = makeBrowser()
  p.run(STUB)
  p.api('view', { id: 'p1' })
  await p.load()
  assert.equal(typeof p.win.affinity, 'function')
  assert.equal(p.win.affinity.q, undefined, 'the stub was replaced')
  await p.advance(5000)
  assert.equal(p.requests.length, 0)
  assert.equal(p.storage.size, 0)
  assert.equal(p.cookies.size, 0)
  p.api('init', { site: 'pk_test' })
  await p.advance(1000)
  assert.equal(p.requests.length, 1)
  const b = p.requests[0].body
  assert.deepEqual(b.events.map(e => e.t).sort(), ['pageview', 'view'])
})

test('init: automatic pageview, batched within 1 s, exact wire format, default endpoint = script origin', async () => {
  const p = await ready()
  p.api('view', { id: 'sku1', brand: 'Lego', category: 'toys', age: '3-6', price: 19.9 })
  assert.equal(p.requests.length, 0, 'batched, not sent at once')
  await p.advance(999)
  assert.equal(p.requests.length, 0)
  await p.advance(1)
  assert.equal(p.requests.length, 1)
  const r = p.requests[0]
  assert.equal(r.url, 'https://collect.example.com/v1/events')
  assert.equal(r.init.method, 'POST')
  assert.equal(r.init.keepalive, true)
  assert.equal(r.init.credentials, 'omit')
  assert.deepEqual({ ...r.init.headers }, { 'Content-Type': 'text/plain' })
  assert.equal(typeof r.init.body, 'string')
  assert.deepEqual(Object.keys(r.body), ['site', 'v', 'events'])
  assert.equal(r.body.site, 'pk_test')
  assert.match(r.body.v, UUID4)
  const [pv, view] = r.body.events
  assert.deepEqual(Object.keys(pv), ['id', 't', 'ts', 'url'])
  assert.equal(pv.t, 'pageview')
  assert.equal(pv.url, 'https://shop.example/')
  assert.equal(pv.ts, 1_700_000_000_000)
  assert.match(pv.id, UUID4)
  assert.deepEqual(view.product, { id: 'sku1', brand: 'Lego', category: 'toys', age: '3-6', price: 19.9 })
  assert.notEqual(pv.id, view.id)
})

test('visitor id: cookie _aff_v (1 year, Lax, path=/) mirrored in localStorage, kept across reloads', async () => {
  const p = await ready()
  const v = p.cookies.get('_aff_v')
  assert.match(v, UUID4)
  assert.equal(JSON.parse(p.storage.get('_aff_v')), v)
  assert.match(p.win.lastCookie, /^_aff_v=[0-9a-f-]{36};path=\/;max-age=31536000;SameSite=Lax$/)
  // reload: same id; cookie first
  const p2 = await ready({ storage: p.storage, cookies: p.cookies })
  assert.equal(p2.cookies.get('_aff_v'), v)
  // cookie lost (e.g. cleared): localStorage restores it and the cookie is renewed
  p.cookies.clear()
  const p3 = await ready({ storage: p.storage, cookies: p.cookies })
  assert.equal(p3.cookies.get('_aff_v'), v)
  await p3.advance(1000)
  assert.equal(p3.requests[0].body.v, v)
  // cookie wins over localStorage
  const other = '11111111-2222-4333-8444-555555555555'
  p.cookies.set('_aff_v', other)
  const p4 = await ready({ storage: p.storage, cookies: p.cookies })
  await p4.advance(1000)
  assert.equal(p4.requests.at(-1).body.v, other)
})

test('explicit endpoint, trailing slash removed', async () => {
  const p = await ready({}, { site: 's', endpoint: 'https://c.example.net/' })
  await p.advance(1000)
  assert.equal(p.requests[0].url, 'https://c.example.net/v1/events')
})

test('20 events are sent at once, the rest after 1 s; one fetch in flight at a time', async () => {
  const p = await ready()
  for (let i = 0; i < 44; i++) p.api('view', { id: 'p' + i })
  // 45 queued (pageview + 44): the first 20 go now, the rest waits for the ack
  assert.equal(p.requests.length, 1)
  assert.equal(p.requests[0].body.events.length, 20)
  await p.advance(3000)
  assert.equal(p.requests.length, 1, 'no second fetch while one is in flight')
  await p.respond(202)
  assert.equal(p.requests.length, 2)
  assert.equal(p.requests[1].body.events.length, 20)
  await p.respond(202)
  assert.equal(p.requests.length, 2, 'the last 5 wait for the batching timer')
  await p.advance(1000)
  assert.equal(p.requests[2].body.events.length, 5)
  await p.respond(202)
  const ids = p.requests.flatMap(r => r.body.events.map(e => e.id))
  assert.equal(new Set(ids).size, 45, 'each event sent once')
  assert.deepEqual(p.queue(), [])
})

test('events leave the queue only on 2xx; retries resend the same ids with backoff', async () => {
  const p = await ready()
  await p.advance(1000)
  const first = p.requests[0].body.events.map(e => e.id)
  assert.equal(p.queue().length, 1)
  await p.respond(503)
  assert.equal(p.queue().length, 1, 'kept after 503')
  await p.advance(700)
  assert.equal(p.requests.length, 1, 'no retry before the backoff (≥ 750 ms)')
  await p.advance(600)
  assert.equal(p.requests.length, 2, 'retry after ~1 s')
  assert.deepEqual(p.requests[1].body.events.map(e => e.id), first)
  await p.fail() // network error
  await p.advance(1400)
  assert.equal(p.requests.length, 2, 'second retry waits ~2 s')
  await p.advance(1200)
  assert.equal(p.requests.length, 3)
  await p.respond(429, { 'Retry-After': '30' })
  await p.advance(29000)
  assert.equal(p.requests.length, 3, 'Retry-After honoured')
  p.api('view', { id: 'late' }) // a new event does not cut the backoff short
  await p.advance(500)
  assert.equal(p.requests.length, 3)
  await p.advance(1000)
  assert.equal(p.requests.length, 4)
  assert.deepEqual(p.requests[3].body.events.map(e => e.id).slice(0, 1), first)
  await p.respond(202)
  // backoff reset: the rest goes after the normal batching delay
  await p.advance(1000)
  assert.deepEqual(p.queue(), [])
})

test('a 4xx other than 429 drops the events for good and warns once', async () => {
  const p = await ready()
  await p.advance(1000)
  await p.respond(400)
  assert.deepEqual(p.queue(), [])
  p.api('view', { id: 'x' })
  await p.advance(1000)
  await p.respond(403)
  await p.advance(120000)
  assert.equal(p.requests.length, 2, 'never retried')
  assert.equal(p.warnings.length, 1)
  assert.match(p.warnings[0], /400/)
})

test('queue survives a reload and is resent with the same ids', async () => {
  const p = await ready()
  p.api('cart', { id: 'p1' })
  await p.advance(1000)
  const ids = p.requests[0].body.events.map(e => e.id)
  await p.fail()
  // the page goes away while backing off: no beacon (collector failing)
  p.hide(); p.pagehide()
  assert.equal(p.beacons.length, 0)
  const p2 = await ready({ storage: p.storage, cookies: p.cookies, href: 'https://shop.example/next' })
  await p2.advance(1000)
  const sent = p2.requests[0].body.events
  assert.deepEqual(sent.slice(0, 2).map(e => e.id), ids)
  assert.equal(sent[2].t, 'pageview')
  assert.equal(sent[2].url, 'https://shop.example/next')
  await p2.respond(202)
  assert.deepEqual(p2.queue(), [])
})

test('on hide, pending events go by sendBeacon (not those in flight) and leave the queue', async () => {
  const p = await ready()
  for (let i = 0; i < 19; i++) p.api('view', { id: 'a' + i })
  assert.equal(p.requests.length, 1) // 20 in flight
  for (let i = 0; i < 3; i++) p.api('view', { id: 'b' + i })
  p.hide()
  assert.equal(p.beacons.length, 1)
  assert.equal(p.beacons[0].url, 'https://collect.example.com/v1/events')
  assert.deepEqual(p.beacons[0].body.events.map(e => e.product.id), ['b0', 'b1', 'b2'])
  assert.deepEqual(Object.keys(p.beacons[0].body), ['site', 'v', 'events'])
  const flying = new Set(p.requests[0].body.events.map(e => e.id))
  assert.ok(p.beacons[0].body.events.every(e => !flying.has(e.id)))
  assert.equal(p.queue().length, 20, 'only the in-flight events remain')
  p.pagehide()
  assert.equal(p.beacons.length, 1, 'nothing left to beacon')
  await p.respond(202)
  assert.deepEqual(p.queue(), [])
})

test('a refused beacon (false) keeps its events for the next try', async () => {
  const p = await ready()
  p.setBeaconOK(false)
  p.hide()
  assert.equal(p.beacons.length, 1)
  assert.equal(p.queue().length, 1)
  p.setBeaconOK(true)
  p.pagehide()
  assert.equal(p.beacons.length, 2)
  assert.deepEqual(p.queue(), [])
})

test('overflow: the queue keeps 200, counts drops and reports them once as "dropped"', async () => {
  const p = await ready()
  await p.advance(1000)
  await p.fail() // collector down: events pile up
  for (let i = 0; i < 229; i++) p.api('view', { id: 'p' + i })
  assert.equal(p.queue().length, 200)
  assert.equal(JSON.parse(p.storage.get('_aff_d')), 30)
  assert.equal(p.queue()[0].product.id, 'p29', 'oldest dropped first')
  await p.advance(2000)
  const r = p.requests.at(-1)
  assert.equal(r.body.dropped, 30)
  assert.equal(r.body.events.length, 20)
  await p.respond(202)
  assert.equal(p.storage.has('_aff_d'), false, 'drop count cleared after the ack')
  assert.equal(p.requests.at(-1).body.dropped, undefined, 'reported once')
})

test('an event too large for any batch is refused at once instead of wedging the queue', async () => {
  const p = await ready()
  p.api('identify', 'a@b.c', { blob: 'x'.repeat(70000) })
  p.api('view', { id: 'ok' })
  await p.advance(1000)
  assert.deepEqual(p.requests[0].body.events.map(e => e.t), ['pageview', 'view'])
})

test('purchase and identify: contract fields', async () => {
  const p = await ready()
  p.api('purchase', { order_id: 'o-1', total: 42.5, items: [{ id: 'p1', price: 20, qty: 2 }, { id: 'p2' }] })
  p.api('identify', 'ann@example.com', { birthday: '1990-05-12', kids: 2, vip: true, skip: { x: 1 } })
  p.api('bogus', 1)
  await p.advance(1000)
  const [, buy, who] = p.requests[0].body.events
  assert.equal(p.requests[0].body.events.length, 3, 'an unknown command makes no event')
  assert.equal(buy.t, 'purchase')
  assert.deepEqual(buy.order, { id: 'o-1', total: 42.5, items: [{ id: 'p1', price: 20, qty: 2 }, { id: 'p2' }] })
  assert.equal(who.t, 'identify')
  assert.equal(who.email, 'ann@example.com')
  assert.deepEqual(who.traits, { birthday: '1990-05-12', kids: 2, vip: true })
})

test('a campaign click\'s landing (aff_t) sends an identify with the token, once per start', async () => {
  const p = await ready({ href: 'https://shop.example/p/1?x=y&aff_t=AQEAAAAAAAAAAAAAAAA' })
  await p.advance(1000)
  const evs = p.requests[0].body.events
  assert.deepEqual(evs.map(e => e.t), ['pageview', 'identify'])
  assert.equal(evs[1].token, 'AQEAAAAAAAAAAAAAAAA')
  assert.equal(evs[1].email, undefined)
  const q = await ready({ href: 'https://shop.example/p/1?aff_t=' })
  await q.advance(1000)
  assert.deepEqual(q.requests[0].body.events.map(e => e.t), ['pageview'], 'an empty aff_t sends nothing')
})

test('SPA: pushState/replaceState/popstate make pageviews, deduped on unchanged URL', async () => {
  const p = await ready()
  p.win.history.pushState({}, '', '/c/toys')
  p.win.history.replaceState({}, '', '/c/toys') // same URL: no pageview
  p.win.history.pushState({}, '', '/c/toys')
  p.win.history.pushState({}, '', '/p/1?x=1')
  p.popstate('/c/toys')
  p.popstate('/c/toys')
  p.api('pageview') // manual, URL unchanged: deduped
  await p.advance(1000)
  const pvs = p.requests[0].body.events.filter(e => e.t === 'pageview').map(e => e.url)
  assert.deepEqual(pvs, ['https://shop.example/', 'https://shop.example/c/toys', 'https://shop.example/p/1?x=1', 'https://shop.example/c/toys'])
  assert.equal(p.href, 'https://shop.example/c/toys', 'history still works')
})

test('consent(false) stops everything and clears storage; consent(true) resumes with a new visitor', async () => {
  const p = await ready()
  const v1 = p.cookies.get('_aff_v')
  p.api('view', { id: 'a' })
  p.api('consent', false)
  assert.equal(p.cookies.has('_aff_v'), false)
  assert.match(p.win.lastCookie, /^_aff_v=;path=\/;max-age=0/)
  assert.deepEqual([...p.storage.keys()], ['_aff_o'])
  p.api('view', { id: 'b' })
  p.win.history.pushState({}, '', '/x')
  p.hide(); p.pagehide()
  await p.advance(10000)
  assert.equal(p.requests.length + p.beacons.length + p.pixels.length, 0)
  assert.deepEqual([...p.storage.keys()], ['_aff_o'])
  // the opt-out outlives the page
  const p2 = await ready({ storage: p.storage, cookies: p.cookies })
  await p2.advance(5000)
  assert.equal(p2.requests.length, 0)
  assert.equal(p2.cookies.size, 0)
  p2.api('consent', true)
  assert.equal(p2.storage.has('_aff_o'), false)
  const v2 = p2.cookies.get('_aff_v')
  assert.match(v2, UUID4)
  assert.notEqual(v2, v1)
  await p2.advance(1000)
  assert.deepEqual(p2.requests[0].body.events.map(e => e.t), ['pageview'])
  assert.equal(p2.requests[0].body.v, v2)
})

test('consent(false) before init (in the stub queue): nothing is stored or sent', async () => {
  const p = makeBrowser()
  p.run(STUB)
  p.api('consent', false)
  p.api('init', { site: 's' })
  p.api('view', { id: 'a' })
  await p.load()
  await p.advance(5000)
  assert.equal(p.requests.length, 0)
  assert.equal(p.cookies.size, 0)
})

test('consent(false) while a fetch is in flight: its answer writes nothing back', async () => {
  const p = await ready()
  await p.advance(1000)
  p.api('consent', false)
  await p.respond(202)
  await p.advance(5000)
  assert.deepEqual([...p.storage.keys()], ['_aff_o'])
})

for (const nav of [{ doNotTrack: '1' }, { globalPrivacyControl: true }]) {
  test(`Do Not Track / GPC ${JSON.stringify(nav)}: honoured, unless respectDnt: false`, async () => {
    const p = await ready({ nav })
    p.api('view', { id: 'a' })
    p.hide()
    await p.advance(5000)
    assert.equal(p.requests.length + p.beacons.length, 0)
    assert.equal(p.cookies.size + p.storage.size, 0)
    const q = await ready({ nav }, { site: 's', respectDnt: false })
    await q.advance(1000)
    assert.equal(q.requests.length, 1)
  })
}

test('doNotTrack "0" does not block', async () => {
  const p = await ready({ nav: { doNotTrack: '0', globalPrivacyControl: false } })
  await p.advance(1000)
  assert.equal(p.requests.length, 1)
})

test('without fetch: sendBeacon carries the batches', async () => {
  const p = await ready({ fetch: false })
  p.api('view', { id: 'a' })
  await p.advance(1000)
  assert.equal(p.beacons.length, 1)
  assert.equal(p.beacons[0].body.events.length, 2)
  assert.deepEqual(p.queue(), [])
})

test('without fetch and sendBeacon: the image pixel, base64url, in URL-sized batches', async () => {
  const p = await ready({ fetch: false, beacon: false })
  for (let i = 0; i < 12; i++) p.api('view', { id: 'p' + i, brand: 'b'.repeat(100), category: 'ä/ö' })
  await p.advance(1000)
  assert.ok(p.pixels.length >= 2)
  const all = []
  for (const u of p.pixels) {
    const m = u.match(/^https:\/\/collect\.example\.com\/v1\/p\.gif\?d=([A-Za-z0-9_-]+)$/)
    assert.ok(m, u)
    assert.ok(u.length < 2200)
    const b = JSON.parse(Buffer.from(m[1], 'base64url').toString('utf8'))
    assert.equal(b.site, 'pk_test')
    all.push(...b.events)
  }
  assert.equal(all.length, 13)
  assert.equal(all[1].product.category, 'ä/ö')
  assert.deepEqual(p.queue(), [])
})

test('without crypto.randomUUID (insecure context): ids still canonical v4', async () => {
  const { webcrypto } = await import('node:crypto')
  const p = await ready({ crypto: { getRandomValues: a => webcrypto.getRandomValues(a) } })
  await p.advance(1000)
  assert.match(p.requests[0].body.events[0].id, UUID4)
  assert.match(p.requests[0].body.v, UUID4)
  const q = await ready({ crypto: null })
  await q.advance(1000)
  assert.match(q.requests[0].body.events[0].id, UUID4)
})

test('localStorage unusable: works from memory for the page', async () => {
  const p = makeBrowser()
  p.win.localStorage = { getItem() { throw new Error('SecurityError') }, setItem() { throw new Error('x') }, removeItem() { throw new Error('x') } }
  p.run(STUB)
  p.api('init', { site: 's' })
  await p.load()
  p.api('view', { id: 'a' })
  await p.advance(1000)
  assert.equal(p.requests[0].body.events.length, 2)
  await p.respond(503)
  await p.advance(1500)
  assert.deepEqual(p.requests[1].body.events.map(e => e.id), p.requests[0].body.events.map(e => e.id))
  await p.respond(202)
  await p.advance(5000)
  assert.equal(p.requests.length, 2)
})

test('errors never reach the page', async () => {
  const p = await ready()
  p.win.fetch = () => { throw new Error('boom') }
  assert.doesNotThrow(() => p.api('view', null))
  assert.doesNotThrow(() => p.api('purchase'))
  assert.doesNotThrow(() => p.api('identify'))
  assert.doesNotThrow(() => p.api())
  assert.doesNotThrow(() => p.api('init'))
  await p.advance(2000)
  assert.doesNotThrow(() => p.hide())
})

test('loaded twice: the second copy keeps the first', async () => {
  const p = await ready()
  const first = p.win.affinity
  await p.load()
  assert.equal(p.win.affinity, first)
  p.win.history.pushState({}, '', '/y')
  await p.advance(1000)
  assert.equal(p.requests[0].body.events.filter(e => e.url.endsWith('/y')).length, 1)
})

test('without sendBeacon, hiding the page never starts a second fetch beside the one in flight', async () => {
  const p = await ready({ beacon: false })
  await p.advance(1000)
  p.api('view', { id: 'a' })
  p.hide(); p.pagehide()
  assert.equal(p.requests.length, 1)
  await p.respond(202)
  await p.advance(1000)
  assert.equal(p.requests.length, 2)
  assert.deepEqual(p.requests[1].body.events.map(e => e.t), ['view'])
})
