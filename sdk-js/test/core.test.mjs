// Unit tests of the pure parts (src/core.js).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { webcrypto } from 'node:crypto'
import { uuid, b64, size, push, backoff, body, split, dedupe, fields, event, CAP, MAX_EVENTS, MAX_BYTES } from '../src/core.js'

const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

test('queue: cap keeps the newest events and counts the dropped oldest', () => {
  const q = []
  let dropped = 0
  for (let i = 0; i < CAP; i++) dropped += push(q, { id: 'e' + i })
  assert.equal(CAP, 200)
  assert.equal(q.length, 200)
  assert.equal(dropped, 0)
  assert.equal(push(q, { id: 'e200' }), 1)
  assert.equal(q.length, 200)
  assert.equal(q[0].id, 'e1', 'the oldest went first')
  assert.equal(q[199].id, 'e200')
  for (let i = 201; i < 260; i++) dropped += push(q, { id: 'e' + i })
  assert.equal(dropped, 59)
  assert.equal(q.length, 200)
  assert.deepEqual(q.slice(0, 2).map(e => e.id), ['e60', 'e61'])
  assert.equal(q[199].id, 'e259')
})

test('queue: a queue already above a smaller cap is cut to it in one push', () => {
  const q = Array.from({ length: 10 }, (_, i) => i)
  assert.equal(push(q, 10, 4), 7)
  assert.deepEqual(q, [7, 8, 9, 10])
})

test('backoff: 1 s, 2 s, 4 s … doubling, capped at 60 s', () => {
  const mid = [0, 1, 2, 3, 4, 5, 6, 7, 20, 1000].map(n => backoff(n, 0, 0.5))
  assert.deepEqual(mid, [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000, 60000])
})

test('backoff: jitter stays within ±25% and under the cap', () => {
  assert.equal(backoff(0, 0, 0), 750)
  assert.equal(backoff(0, 0, 0.999999).toFixed(0), '1250')
  assert.equal(backoff(3, 0, 0), 6000)
  for (let n = 0; n < 30; n++) for (const r of [0, 0.3, 0.99]) {
    const d = backoff(n, 0, r)
    assert.ok(d >= 750 && d <= 60000, `n=${n} r=${r} → ${d}`)
  }
  // without r, Math.random is used: the values differ run to run but stay in range
  const seen = new Set()
  for (let i = 0; i < 50; i++) {
    const d = backoff(2, 0)
    assert.ok(d >= 3000 && d <= 5000)
    seen.add(d)
  }
  assert.ok(seen.size > 1, 'jitter varies')
})

test('backoff: Retry-After seconds are a lower bound, capped at an hour', () => {
  assert.equal(backoff(0, 30, 0.5), 30000)
  assert.equal(backoff(8, 5, 0.5), 60000, 'a shorter Retry-After does not shorten the backoff')
  assert.equal(backoff(0, 120, 0.5), 120000, 'honoured above the 60 s cap')
  assert.equal(backoff(0, 1e9, 0.5), 3600000)
  assert.equal(backoff(1, NaN, 0.5), 2000, 'an unreadable (date) Retry-After is ignored')
  assert.equal(backoff(1, 0, 0.5), 2000)
})

const ev = (i, pad = 0) => event('view', { product: { id: 'p' + i, brand: 'x'.repeat(pad) } }, 'id' + i, 1700000000000 + i, 'https://shop.example/p' + i)

test('split: at most 20 events per batch, order kept, nothing lost', () => {
  const q = Array.from({ length: 45 }, (_, i) => ev(i))
  const bs = split(q, 'site', 'vis', 0)
  assert.deepEqual(bs.map(b => b.length), [20, 20, 5])
  assert.deepEqual(bs.flat(), q)
  assert.equal(MAX_EVENTS, 20)
  assert.deepEqual(split(q.slice(0, 20), 's', 'v', 0).map(b => b.length), [20])
  assert.deepEqual(split(q.slice(0, 1), 's', 'v', 0).map(b => b.length), [1])
  assert.deepEqual(split([], 's', 'v', 0), [])
})

test('split: every body stays within 64 KiB (UTF-8 bytes), filled greedily', () => {
  // ~5 KB events of multi-byte text: 12 fit in 64 KiB, far fewer than 20.
  const q = Array.from({ length: 30 }, (_, i) => ev(i, 0))
  for (const e of q) e.product.brand = 'ü'.repeat(2500) // 5000 bytes, 2500 chars
  const bs = split(q, 'site', 'vis', 7)
  assert.deepEqual(bs.flat(), q)
  assert.ok(bs.length >= 3)
  for (const [i, b] of bs.entries()) {
    const s = body(b, 'site', 'vis', i ? 0 : 7)
    const bytes = Buffer.byteLength(s)
    assert.ok(bytes <= MAX_BYTES, `batch ${i}: ${bytes} bytes`)
    assert.ok(b.length < 20)
  }
  // greedy: adding the next event to a full batch would have crossed the limit
  for (let i = 0; i + 1 < bs.length; i++) {
    const bigger = body([...bs[i], bs[i + 1][0]], 'site', 'vis', 7)
    assert.ok(Buffer.byteLength(bigger) > MAX_BYTES)
  }
  assert.equal(MAX_BYTES, 65536)
})

test('split: a smaller limit (the pixel URL) splits sooner; an oversized event travels alone', () => {
  const q = Array.from({ length: 6 }, (_, i) => ev(i, 200))
  const bs = split(q, 's', 'v', 0, 1500)
  for (const b of bs) assert.ok(Buffer.byteLength(body(b, 's', 'v', 0)) <= 1500)
  assert.ok(bs.length > 1)
  const big = ev(9, 3000)
  assert.deepEqual(split([ev(1), big, ev(2)], 's', 'v', 0, 1500).map(b => b.map(e => e.id)), [['id1'], ['id9'], ['id2']])
})

test('size counts UTF-8 bytes', () => {
  assert.equal(size('abc'), 3)
  assert.equal(size('ü'), 2)
  assert.equal(size('€'), 3)
  assert.equal(size('😀'), 4)
})

test('body: exactly the wire format, dropped only when there were drops', () => {
  const e = ev(1)
  const s = body([e], 'pk_1', '0f8fad5b-d9cb-469f-a165-70867728950e', 0)
  assert.equal(s, '{"site":"pk_1","v":"0f8fad5b-d9cb-469f-a165-70867728950e","events":[{"id":"id1","t":"view","ts":1700000000001,"url":"https://shop.example/p1","product":{"id":"p1","brand":""}}]}')
  const d = JSON.parse(body([e], 'pk_1', 'v', 3))
  assert.deepEqual(Object.keys(d), ['site', 'v', 'events', 'dropped'])
  assert.equal(d.dropped, 3)
})

test('fields: product events keep the known fields, typed', () => {
  const f = fields('view', { id: 42, brand: 'Lego', category: 'toys/blocks', age: '3-6', price: '19.90', color: 'red', qty: null })
  assert.deepEqual(f, { product: { id: '42', brand: 'Lego', category: 'toys/blocks', age: '3-6', price: 19.9 } })
  assert.deepEqual(fields('cart', { id: 'a' }), { product: { id: 'a' } })
  assert.deepEqual(fields('uncart', { id: 'a', brand: null }), { product: { id: 'a' } })
  assert.equal(fields('nonsense', {}), undefined)
  assert.equal(fields('init', {}), undefined)
})

test('fields: purchase becomes order {id, total, items}', () => {
  const f = fields('purchase', { order_id: 1001, total: 59.8, items: [{ id: 'p1', price: 29.9, qty: 2, junk: 1 }] })
  assert.deepEqual(f, { order: { id: '1001', total: 59.8, items: [{ id: 'p1', price: 29.9, qty: 2 }] } })
  assert.deepEqual(Object.keys(f.order), ['id', 'total', 'items'])
  assert.deepEqual(fields('purchase', { order_id: 'o2' }), { order: { id: 'o2', items: [] } })
})

test('fields: identify keeps email and scalar traits only', () => {
  const f = fields('identify', 'Ann@Example.com', { birthday: '1990-05-12', kids: 2, vip: true, nested: { a: 1 }, nope: null, fn() {} })
  assert.deepEqual(f, { email: 'Ann@Example.com', traits: { birthday: '1990-05-12', kids: 2, vip: true } })
  assert.deepEqual(fields('identify', 'a@b.c'), { email: 'a@b.c' })
})

test('event: id, t, ts, url first, then the fields; JSON shape of the contract', () => {
  const e = event('purchase', fields('purchase', { order_id: 'o1', total: 10, items: [{ id: 'p' }] }), 'u', 5, 'https://s/x')
  assert.equal(JSON.stringify(e), '{"id":"u","t":"purchase","ts":5,"url":"https://s/x","order":{"id":"o1","total":10,"items":[{"id":"p"}]}}')
  const p = event('pageview', {}, 'u', 5, 'https://s/')
  assert.deepEqual(Object.keys(p), ['id', 't', 'ts', 'url'])
})

test('uuid: canonical lowercase v4 from randomUUID, getRandomValues and Math.random', () => {
  const viaRandomUUID = uuid(webcrypto)
  const viaGRV = uuid({ getRandomValues: a => webcrypto.getRandomValues(a) })
  const viaMath = uuid(undefined)
  for (const u of [viaRandomUUID, viaGRV, viaMath]) assert.match(u, UUID4)
  // the fallbacks really use their source
  assert.equal(uuid({ randomUUID: () => 'X' }), 'X')
  assert.equal(uuid({ getRandomValues: a => a.fill(0) }), '00000000-0000-4000-8000-000000000000')
  assert.equal(uuid({ getRandomValues: a => a.fill(255) }), 'ffffffff-ffff-4fff-bfff-ffffffffffff')
})

test('uuid: unique over many draws in each mode', () => {
  for (const c of [webcrypto, { getRandomValues: a => webcrypto.getRandomValues(a) }, null]) {
    const s = new Set()
    for (let i = 0; i < 5000; i++) {
      const u = uuid(c)
      assert.match(u, UUID4)
      s.add(u)
    }
    assert.equal(s.size, 5000)
  }
})

test('b64: base64url without padding, round trip of UTF-8 JSON', () => {
  for (const s of ['', 'a', 'ab', 'abc', '{"site":"s","v":"ü€😀"}', body([ev(1), ev(2, 100)], 's', 'v', 2), '\u00ff\u00fe>>??']) {
    const enc = b64(s)
    assert.match(enc, /^[A-Za-z0-9_-]*$/)
    assert.equal(Buffer.from(enc, 'base64url').toString('utf8'), s)
  }
  assert.equal(b64('>>>?'), 'Pj4-Pw')
  assert.equal(b64('???'), 'Pz8_')
})

test('dedupe: a pageview only when the URL changed', () => {
  const seen = dedupe()
  assert.equal(seen('https://s/a'), true)
  assert.equal(seen('https://s/a'), false)
  assert.equal(seen('https://s/a'), false)
  assert.equal(seen('https://s/b'), true)
  assert.equal(seen('https://s/a'), true)
  assert.equal(seen('https://s/a#x'), true)
  assert.equal(seen('https://s/a#x'), false)
})
