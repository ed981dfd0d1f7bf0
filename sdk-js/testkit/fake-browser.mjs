// A small fake browser for running the built snippet (the same esbuild
// bundle as dist/sdk.js) in a Node vm context: localStorage, cookies, history,
// fetch, sendBeacon, Image, timers on a manual clock. Not a DOM: just the
// surface the snippet touches, enough to check its behaviour end to end.
import vm from 'node:vm'
import { webcrypto } from 'node:crypto'
import { build } from 'esbuild'

let code
export const bundle = async () => {
  code ??= (await build({
    entryPoints: [new URL('../src/affinity.js', import.meta.url).pathname],
    bundle: true, format: 'iife', target: 'es2017', minify: true, write: false,
  })).outputFiles[0].text
  return code
}

export const tick = () => new Promise(r => setImmediate(r))

// makeBrowser returns a fresh page. opts.storage / opts.cookies carry state
// over from a previous page (a reload); opts.fetch=false / opts.beacon=false
// remove those APIs; opts.nav adds navigator fields.
export const makeBrowser = (opts = {}) => {
  const storage = opts.storage ?? new Map()
  const cookies = opts.cookies ?? new Map()
  const listeners = { window: {}, document: {} }
  const timers = []
  let now = opts.now ?? 1_700_000_000_000
  let href = opts.href ?? 'https://shop.example/'
  const requests = [] // {url, init, body, resolve, reject}
  const beacons = []  // {url, body}
  const pixels = []   // url strings
  const warnings = []
  let beaconOK = true
  const on = (where, type, f) => { (listeners[where][type] ??= []).push(f) }
  const fire = (where, type) => { for (const f of listeners[where][type] ?? []) f({ type }) }

  const win = {
    console: { warn: (...a) => warnings.push(a.join(' ')), log() {}, error() {} },
    Blob, URL, btoa, unescape, encodeURIComponent,
    crypto: opts.crypto === undefined ? webcrypto : opts.crypto,
    Date: class extends Date { static now() { return now } },
    setTimeout: (f, ms) => { const t = { f, at: now + ms, id: timers.length + 1 }; timers.push(t); return t.id },
    clearTimeout: id => { const t = timers.find(t => t.id === id); if (t) t.done = true },
    addEventListener: (type, f) => on('window', type, f),
    location: { get href() { return href } },
    history: {
      pushState(s, t, u) { href = new URL(u, href).href },
      replaceState(s, t, u) { href = new URL(u, href).href },
    },
    navigator: { ...(opts.nav ?? {}) },
    document: {
      currentScript: { src: opts.src ?? 'https://collect.example.com/sdk.js' },
      visibilityState: 'visible',
      addEventListener: (type, f) => on('document', type, f),
      get cookie() { return [...cookies].map(([k, v]) => k + '=' + v).join('; ') },
      set cookie(s) {
        const [kv, ...attrs] = s.split(';')
        const [k, v] = kv.split('=')
        const maxAge = attrs.map(a => a.split('=')).find(([a]) => a.trim().toLowerCase() === 'max-age')
        if (maxAge && +maxAge[1] <= 0) cookies.delete(k)
        else cookies.set(k, v)
        win.lastCookie = s
      },
    },
    localStorage: {
      getItem: k => storage.has(k) ? storage.get(k) : null,
      setItem: (k, v) => { storage.set(k, String(v)) },
      removeItem: k => { storage.delete(k) },
    },
  }
  if (opts.fetch !== false) {
    win.fetch = (url, init) => new Promise((resolve, reject) => {
      requests.push({ url, init, body: JSON.parse(init.body), resolve, reject })
    })
  }
  if (opts.beacon !== false) {
    win.navigator.sendBeacon = (url, body) => {
      if (typeof body !== 'string') throw new Error('beacon body must be a string')
      beacons.push({ url, body: JSON.parse(body) })
      return beaconOK
    }
  }
  win.Image = class { set src(u) { pixels.push(u) } }
  win.window = win
  vm.createContext(win)

  const page = {
    win, storage, cookies, requests, beacons, pixels, warnings, timers,
    get href() { return href },
    async load() { vm.runInContext(await bundle(), win) },
    run: src => vm.runInContext(src, win),
    api: (...a) => win.affinity(...a),
    // advance the clock by ms, firing due timers in order
    async advance(ms) {
      const end = now + ms
      for (;;) {
        const due = timers.filter(t => !t.done && t.at <= end).sort((a, b) => a.at - b.at)[0]
        if (!due) break
        now = Math.max(now, due.at)
        due.done = true
        due.f()
        await tick()
      }
      now = end
      await tick()
    },
    pendingTimers: () => timers.filter(t => !t.done).length,
    // answer the oldest unanswered fetch
    async respond(status, headers = {}) {
      const r = requests.find(r => !r.answered)
      if (!r) throw new Error('no fetch in flight')
      r.answered = true
      r.resolve({ status, headers: { get: k => headers[k] ?? null } })
      await tick(); await tick()
      return r
    },
    async fail() {
      const r = requests.find(r => !r.answered)
      r.answered = true
      r.reject(new TypeError('Failed to fetch'))
      await tick(); await tick()
      return r
    },
    inFlight: () => requests.filter(r => !r.answered),
    queue: () => JSON.parse(storage.get('_aff_q') ?? '[]'),
    hide: () => { win.document.visibilityState = 'hidden'; fire('document', 'visibilitychange') },
    pagehide: () => fire('window', 'pagehide'),
    popstate: u => { href = new URL(u, href).href; fire('window', 'popstate') },
    setBeaconOK: v => { beaconOK = v },
    setNow: t => { now = t },
  }
  return page
}
