// Pure parts of the affinity snippet: no DOM, no globals besides the standard
// library, so that Node's test runner can import them (test/*.test.mjs) and
// esbuild can inline them into dist/sdk.js.
//
// Written for minification: plain functions and short literals; esbuild
// mangles every local name, so only property names and strings remain.

// The collector's limits per batch: at most 100 events and 64 KiB; the
// snippet sends at most MAX_EVENTS anyway.
export const MAX_EVENTS = 20
export const MAX_BYTES = 65536
// The pending queue's cap (events kept in localStorage until acknowledged).
export const CAP = 200

// uuid returns a canonical lowercase v4 UUID (8-4-4-4-12). c is a Web Crypto
// object (crypto.randomUUID when present, else getRandomValues); without
// one, Math.random is the last resort.
export const uuid = (c, b = new Uint8Array(16)) => {
  if (c && c.randomUUID) return c.randomUUID()
  c && c.getRandomValues ? c.getRandomValues(b) : b = b.map(() => Math.random() * 256)
  b[6] = b[6] & 15 | 64
  b[8] = b[8] & 63 | 128
  return [...b].map(x => (x + 256).toString(16).slice(1)).join('').replace(/(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-')
}

// size is the UTF-8 byte length of s (never throws, even on lone surrogates).
export const size = s => new Blob([s]).size

// b64 encodes s (UTF-8) as unpadded base64url, for the pixel's d parameter.
export const b64 = s => btoa(unescape(encodeURIComponent(s))).replace(/[+/=]/g, c => c == '+' ? '-' : c == '/' ? '_' : '')

// push appends e to the queue q and drops the oldest events above cap.
// It returns how many it dropped.
export const push = (q, e, cap = CAP) => {
  q.push(e)
  return q.length > cap ? q.splice(0, q.length - cap).length : 0
}

// backoff is the delay in ms before retry number n (0 for the first retry):
// 1 s, 2 s, 4 s … capped at 60 s, each with ±25% jitter (r is a random
// number in [0,1)); a Retry-After of ra seconds (when the answer let us read
// it) is a lower bound, itself capped at one hour so that a timer never
// overflows.
export const backoff = (n, ra, r = Math.random()) =>
  Math.max(Math.min(6e4, 1e3 * 2 ** n * (0.75 + r / 2)), ra > 0 ? Math.min(ra, 3600) * 1e3 : 0)

// body serialises one batch exactly as the collector's contract wants it:
// {"site","v","events"} and, when events were lost to the queue's cap,
// a top-level "dropped" count.
export const body = (events, site, v, dropped) =>
  JSON.stringify(dropped ? { site, v, events, dropped } : { site, v, events })

// split cuts the queue q into batches of at most n events whose bodies
// (with a dropped count d in the head) are at most max bytes. An event too
// large on its own still gets a batch of its own (the collector refuses it
// with a 4xx and it is dropped; the snippet already refuses such events at
// enqueue time).
export const split = (q, site, v, d, max = MAX_BYTES, n = MAX_EVENTS) => {
  const out = [], base = size(body([], site, v, d))
  let cur, sz
  for (const e of q) {
    const l = size(JSON.stringify(e)) + 1
    if (!cur || cur.length >= n || sz + l > max) out.push(cur = []), sz = base
    cur.push(e)
    sz += l
  }
  return out
}

// dedupe returns a function that says whether url differs from the one it
// saw last: SPA route changes report a pageview only when the URL changed.
export const dedupe = last => url => url != last && (last = url, true)

// pick keeps the known product fields: strings for id, brand, category and
// age; numbers for price and qty. Missing and null fields are left out.
const pick = (p, r = {}) => {
  for (const k of ['id', 'brand', 'category', 'age', 'price', 'qty'])
    if (p[k] != null) r[k] = k == 'price' || k == 'qty' ? +p[k] : '' + p[k]
  return r
}

// fields maps a command's arguments to the event's own fields, or returns
// undefined for a command that is no event type.
//   view|cart|uncart (product)           → {product}
//   purchase ({order_id, items, total})  → {order: {id, total, items}}
//   identify (email, traits)             → {email, traits}
export const fields = (c, a, b) => {
  if (c == 'view' || c == 'cart' || c == 'uncart') return { product: pick(Object(a)) }
  if (c == 'purchase') {
    a = Object(a)
    const o = { id: '' + (a.order_id != null ? a.order_id : a.id) }
    if (a.total != null) o.total = +a.total
    o.items = (a.items || []).map(i => pick(Object(i)))
    return { order: o }
  }
  if (c == 'identify') {
    const f = {}, t = {}
    if (a != null) f.email = '' + a
    for (const k in b) if ('string number boolean'.includes(typeof b[k])) t[k] = b[k]
    if (b) f.traits = t
    return f
  }
}

// event is one event of the contract: {id, t, ts, url, …fields}.
export const event = (t, f, id, ts, url) => Object.assign({ id, t, ts, url }, f)
