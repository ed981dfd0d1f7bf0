// The stock Segment client for Node, @segment/analytics-node, unchanged,
// pointed at the real `affinity serve` binary's collector: its batch of
// e-commerce spec events shows in the visitor's profile and in a segment,
// and the same batch sent again (same messageIds) changes nothing.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Analytics } from '@segment/analytics-node'
import { buildBinary, Service, sleep } from '../browser/harness.mjs'

const SITE = 'shop'
const WRITE_KEY = 'sk_test_0123456789abcdef'
const TOKEN = 'browser-test-token'
const ANON = '5f0c3c2e-8a4b-4e8e-9b1d-2c6f7a9e0d11'

async function api (svc, method, path, body) {
  const r = await fetch(svc.api + path, { method, body, headers: { Authorization: 'Bearer ' + TOKEN } })
  return { status: r.status, text: await r.text() }
}

// send posts the spec events through a fresh client and waits for its
// flush; ids and times are fixed so that a second send is a retry.
async function send (collector, t0) {
  const errors = []
  const client = new Analytics({ writeKey: WRITE_KEY, host: collector, flushAt: 50, flushInterval: 100, maxRetries: 0 })
  client.on('error', e => errors.push(e))
  const at = s => new Date(t0 + s * 1000)
  const product = { product_id: 'sku-1001', sku: 'H-1001', name: 'Formula', brand: 'Hipp', category: 'baby/food/formula', price: 12.5 }
  client.page({ anonymousId: ANON, messageId: 'msg-1', timestamp: at(0), name: 'Formula', properties: { url: 'https://shop.example/p/sku-1001' } })
  client.track({ anonymousId: ANON, messageId: 'msg-2', timestamp: at(1), event: 'Product Viewed', properties: product })
  client.track({ anonymousId: ANON, messageId: 'msg-3', timestamp: at(2), event: 'Product Added', properties: { ...product, quantity: 2 } })
  client.identify({ anonymousId: ANON, userId: 'c-9001', messageId: 'msg-4', timestamp: at(3), traits: { email: 'Anna.K@Example.com', birthday: '1990-05-12', plan: { tier: 'gold' } } })
  client.track({
    anonymousId: ANON, userId: 'c-9001', messageId: 'msg-5', timestamp: at(4), event: 'Order Completed',
    properties: { order_id: 'ord-42', total: 37.49, revenue: 30, currency: 'EUR', products: [{ ...product, quantity: 1 }, { sku: 'L-2002', brand: 'Lego', category: 'toys/blocks', price: 24.99, quantity: 1 }] }
  })
  client.track({ anonymousId: ANON, messageId: 'msg-6', timestamp: at(5), event: 'Newsletter Signup', properties: { list: 'weekly' } })
  await client.closeAndFlush({ timeout: 10000 })
  assert.deepEqual(errors, [], 'the client reported delivery errors')
}

async function waitMetric (svc, name, want) {
  const end = Date.now() + 20000
  for (;;) {
    const got = await svc.metric(name)
    if (got >= want) return got
    if (Date.now() > end) throw new Error(`${name} is ${got}, want ${want}:\n${svc.logs}`)
    await sleep(100)
  }
}

test('a stock @segment/analytics-node client, unchanged, feeds profiles and segments', { timeout: 120000 }, async () => {
  const svc = new Service(buildBinary(), { sites: [SITE], args: ['--write-key', `${SITE}=${WRITE_KEY}`] })
  await svc.start()
  try {
    let r = await api(svc, 'PUT', `/v1/segments/${SITE}/buyers`,
      'count(purchase) >= 1 and count(custom) >= 1 and interest(brand, "Hipp") > 0 and identified')
    assert.equal(r.status, 201, r.text)

    const t0 = Date.now() - 60000
    await send(svc.collector, t0)
    await waitMetric(svc, 'affinity_builder_events_applied_total', 6)

    const at = new Date(t0 + 3600000).toISOString()
    r = await api(svc, 'GET', `/v1/visitors/${SITE}/${ANON}?at=${at}`)
    assert.equal(r.status, 200, r.text)
    const p = JSON.parse(r.text)
    assert.equal(p.email, 'anna.k@example.com')
    assert.equal(p.customer_id, 'c-9001')
    for (const [type, n] of Object.entries({ pageview: 1, view: 1, cart: 1, identify: 1, purchase: 1, custom: 1 })) {
      assert.equal(p.events[type]?.count, n, `events.${type}: ${JSON.stringify(p.events)}`)
    }
    assert.deepEqual(p.orders && [p.orders.count, p.orders.revenue], [1, 37.49])
    assert.equal(p.traits.birthday, '1990-05-12')
    assert.deepEqual(p.interests.brand.map(e => e.value).sort(), ['Hipp', 'Lego'])

    r = await api(svc, 'GET', `/v1/segments/${SITE}/buyers/members?format=ndjson`)
    assert.equal(r.status, 200, r.text)
    const rows = r.text.split('\n').filter(Boolean).map(l => JSON.parse(l))
    assert.deepEqual(rows.map(x => [x.visitor, x.email]), [[ANON, 'anna.k@example.com']])

    // The same batch again: acknowledged, stored, and every event a dedup hit.
    const accepted = await svc.metric('affinity_collector_events_accepted_total')
    await send(svc.collector, t0)
    await waitMetric(svc, 'affinity_collector_events_accepted_total', accepted + 6)
    await waitMetric(svc, 'affinity_builder_dedup_hits_total', 6)
    assert.equal(await svc.metric('affinity_builder_events_applied_total'), 6)
    const again = await api(svc, 'GET', `/v1/visitors/${SITE}/${ANON}?at=${at}`)
    assert.deepEqual(JSON.parse(again.text), p)

    // A wrong write key is refused with 401 and the reason.
    const bad = await fetch(svc.collector + '/v1/track', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Basic ' + Buffer.from(SITE + ':').toString('base64') },
      body: JSON.stringify({ anonymousId: ANON, event: 'X' })
    })
    assert.equal(bad.status, 401)
    assert.match(await bad.text(), /^unknown write key "shop": send HTTP Basic auth/)
    await svc.stop()
  } finally {
    svc.kill()
  }
})
