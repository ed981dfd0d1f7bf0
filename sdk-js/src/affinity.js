// affinity browser snippet. Built by build.mjs into one minified IIFE,
// dist/sdk.js. The only global it touches is window.affinity.
//
// Storage (first party only):
//   cookie _aff_v       visitor id (uuid), 1 year, renewed on every load
//   localStorage _aff_v the same id, mirrored
//   localStorage _aff_q pending (unacknowledged) events, at most 200
//   localStorage _aff_d events dropped from the full queue, not yet reported
//   localStorage _aff_o "1" after consent(false): an opt-out that outlives
//                       the page, removed by consent(true)
// When localStorage is unusable, the same keys live in memory for the page.
import { uuid, b64, size, push, backoff, body, split, dedupe, fields, event, MAX_EVENTS } from './core.js'

const win = window, nav = navigator, doc = document, LS = 'localStorage'
const KQ = '_aff_q', KD = '_aff_d', KV = '_aff_v', KO = '_aff_o'

// Endpoint default: the origin that served this file, captured at load.
let origin = ''
try { origin = new URL(doc.currentScript.src).origin } catch (e) {}

let cfg       // init's options; nothing is sent before init
let ep        // collector base URL
let dnt       // Do Not Track / Global Privacy Control in force
let vid       // visitor id
let pre = []  // events made before init (memory only, capped)
let seen = dedupe()
let timer     // the batching timer (≤ 1 s)
let wait      // the backoff timer: no fetch while it runs
let flying    // ids of the events in the one fetch in flight
let tries = 0 // consecutive failed attempts, for the backoff
let warned    // a refused batch (4xx) was reported on the console once
let mem = {}, noLS // memory stand-in for localStorage

// Every entry point and handler goes through safe: the page never sees an
// error of the snippet. Errors are swallowed silently (no contract event for
// them, and nothing to report that the page could act on).
const safe = f => function () { try { return f.apply(this, arguments) } catch (e) {} }

const get = k => {
  try { if (!noLS) return JSON.parse(win[LS].getItem(k)) } catch (e) { noLS = 1 }
  return mem[k]
}
const put = (k, v) => {
  mem[k] = v
  try { v == null ? win[LS].removeItem(k) : win[LS].setItem(k, JSON.stringify(v)) } catch (e) { noLS = 1 }
}
const cookie = v => { doc.cookie = KV + '=' + v + ';path=/;max-age=' + (v ? 31536e3 : 0) + ';SameSite=Lax' }

const ok = () => cfg && !dnt && !get(KO)

// Removes events (by id) from the queue and, when it was reported, the
// dropped count.
const ack = (ids, d) => {
  put(KQ, (get(KQ) || []).filter(e => !ids.includes(e.id)))
  if (d) put(KD, (d = (get(KD) | 0) - d) > 0 ? d : null)
}

const schedule = () => {
  const n = (get(KQ) || []).length
  n >= MAX_EVENTS ? flush() : n && !timer && (timer = setTimeout(safe(flush), 1e3))
}

const enqueue = e => {
  // An event that could never fit in a batch would wedge the queue: refuse it.
  if (size(JSON.stringify(e)) > 6e4) return
  const q = get(KQ) || [], n = push(q, e)
  put(KQ, q)
  n && put(KD, (get(KD) | 0) + n)
  schedule()
}

// flush sends what is pending. Normally: one fetch at a time (so no event is
// in two concurrent fetches), events leave the queue only on a 2xx.
// hide (page hidden or unloading): everything not in flight goes out at once
// by sendBeacon. A beacon that the browser accepts (returns true) removes its
// events from the queue although its delivery is unknown: the trade-off is a
// rare loss (beacon accepted by the browser, then lost on the network or
// refused by the collector) against resending, on every next page load, every
// event of every page that a beacon already delivered. While the collector is
// failing (backoff running) no beacon is sent: the queue stays in
// localStorage and the next page load resends it.
// Without fetch and sendBeacon, the image pixel is used (fire and forget, so
// its events leave the queue as it is sent, in small batches that fit a URL).
const flush = hide => {
  clearTimeout(timer)
  timer = 0
  if (wait || !ok()) return
  let q = get(KQ) || [], d = get(KD) | 0
  const beacon = nav.sendBeacon && (hide || !win.fetch), url = ep + '/v1/events'
  if (flying) {
    // Only a beacon goes out beside the fetch in flight, never its events.
    if (!beacon) return
    q = q.filter(e => !flying.includes(e.id))
  }
  if (!q.length) return
  if (win.fetch && !beacon) {
    const a = split(q, cfg.site, vid, d)[0], ids = flying = a.map(e => e.id)
    const done = safe((s, ra) => {
      flying = 0
      if (!ok()) return
      if (s && (s < 500 && s != 429)) {
        // 2xx: acknowledged. Other 4xx: refused for good, never retried.
        ack(ids, d)
        tries = 0
        s > 299 && !warned && (warned = 1, console.warn('affinity', s))
        schedule()
      } else {
        // Network error, 5xx, 429: keep and retry the same ids later.
        wait = setTimeout(safe(() => { wait = 0, flush() }), backoff(tries++, ra))
      }
    })
    fetch(url, { method: 'POST', body: body(a, cfg.site, vid, d), keepalive: true, credentials: 'omit', headers: { 'Content-Type': 'text/plain' } })
      .then(r => done(r.status, +r.headers.get('Retry-After')), () => done())
  } else {
    for (const a of split(q, cfg.site, vid, d, beacon ? 65536 : 1500)) {
      const b = body(a, cfg.site, vid, d)
      // A string body makes sendBeacon send text/plain.
      if (beacon ? nav.sendBeacon(url, b) : (new Image().src = ep + '/v1/p.gif?d=' + b64(b))) ack(a.map(e => e.id), d), d = 0
    }
  }
}

const track = (t, f) => {
  const e = event(t, f, uuid(win.crypto), Date.now(), location.href)
  cfg ? ok() && enqueue(e) : get(KO) || push(pre, e)
}

const pageview = () => (cfg ? ok() : !get(KO)) && seen(location.href) && track('pageview')

// start: (re)starts tracking after init or consent(true), when allowed.
const start = () => {
  if (ok()) {
    const m = doc.cookie.match(/\b_aff_v=([\da-f-]{36})/), s = get(KV)
    vid = m ? m[1] : /^[\da-f-]{36}$/.test(s) ? s : uuid(win.crypto)
    cookie(vid)
    put(KV, vid)
    pre.map(enqueue)
    pageview()
    // A campaign click's landing (aff_t, added by the collector's
    // redirect): link this browser's visitor to the recipient.
    const t = /[?&]aff_t=([\w-]+)/.exec(location.href)
    t && track('identify', { token: t[1] })
  }
  pre = []
}

const api = safe((c, a, b) => {
  if (c == 'init') {
    cfg = Object(a)
    ep = ('' + (cfg.endpoint || origin)).replace(/\/+$/, '')
    dnt = cfg.respectDnt !== false && (nav.doNotTrack == 1 || nav.globalPrivacyControl == 1)
    start()
  } else if (c == 'consent') {
    if (a) {
      put(KO)
      start()
    } else {
      // Stop everything and forget the visitor.
      put(KO, 1)
      put(KQ)
      put(KD)
      put(KV)
      cookie('')
      clearTimeout(timer)
      clearTimeout(wait)
      pre = []
      vid = timer = wait = flying = tries = 0
      seen = dedupe()
    }
  } else if (c == 'pageview') pageview()
  else {
    const f = fields(c, a, b)
    f && track(c, f)
  }
})
api.l = 1

safe(() => {
  const prev = win.affinity
  if (prev && prev.l) return // loaded twice: keep the first
  win.affinity = api
  // SPA route changes.
  for (const m of ['pushState', 'replaceState']) {
    const o = history[m]
    history[m] = function () {
      const r = o.apply(this, arguments)
      safe(pageview)()
      return r
    }
  }
  addEventListener('popstate', safe(pageview))
  // Page hidden or leaving: send everything pending now.
  const hide = safe(() => flush(1))
  addEventListener('pagehide', hide)
  doc.addEventListener('visibilitychange', () => doc.visibilityState == 'hidden' && hide())
  // Replay what the loader stub queued.
  ;((prev && prev.q) || []).map(a => api.apply(0, a))
})()
