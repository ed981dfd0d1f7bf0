// Harness of the browser tests: the real `affinity serve` binary, a static
// server for the shop's pages on another origin, and Debian's Chromium driven
// by playwright-core. Not a test file itself (no .test.mjs suffix).
import { spawn, spawnSync, execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import http from 'node:http'
import { chromium } from 'playwright-core'

export const SDK_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const ROOT = join(SDK_DIR, '..')
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium'

// The collector drops "headless" User-Agents as bots: the tests browse as a
// plain desktop Chrome.
export const UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36'

// tempDir returns a fresh directory removed at process exit.
export function tempDir (prefix) {
  const d = mkdtempSync(join(tmpdir(), prefix))
  process.on('exit', () => rmSync(d, { recursive: true, force: true }))
  return d
}

// buildBinary builds cmd/affinity into a temp dir and returns its path;
// AFFINITY_BIN names a binary to use instead.
export function buildBinary () {
  if (process.env.AFFINITY_BIN) return process.env.AFFINITY_BIN
  const bin = join(tempDir('affinity-bin-'), 'affinity')
  execFileSync('go', ['build', '-o', bin, './cmd/affinity'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] })
  return bin
}

// Service is one `affinity serve` process on loopback ports, with its own
// data directory. restart() keeps the collector's address (the pages know it).
export class Service {
  constructor (bin, { sites = ['test'], demo = false, args = [] } = {}) {
    this.bin = bin
    this.data = tempDir('affinity-data-')
    this.sites = sites
    this.demo = demo
    this.args = args // more flags, e.g. --write-key
    this.listen = '127.0.0.1:0'
    this.logs = ''
  }

  async start () {
    const args = ['serve', '--data', this.data, '--listen', this.listen, '--api-listen', '127.0.0.1:0',
      '--api-token', 'browser-test-token', '--shutdown-timeout', '5s', '--log-keep-consumed', ...this.sites.flatMap(s => ['--site', s])]
    if (this.demo) args.push('--demo')
    args.push(...this.args)
    const child = this.child = spawn(this.bin, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    this.exited = new Promise(resolve => child.on('exit', (code, sig) => resolve({ code, sig })))
    const m = await new Promise((resolve, reject) => {
      let buf = ''
      child.stderr.on('data', d => {
        this.logs += d
        buf += d
        const m = /listening collector=http:\/\/(\S+) api=http:\/\/(\S+)/.exec(buf)
        if (m) resolve(m), buf = ''
      })
      this.exited.then(e => reject(new Error(`affinity serve exited (${e.code ?? e.sig}) before listening:\n${this.logs}`)))
    })
    this.listen = m[1]
    this.collector = 'http://' + m[1]
    this.api = 'http://' + m[2]
    return this
  }

  // stop sends SIGTERM and waits for a clean exit (status 0).
  async stop () {
    if (!this.child) return
    const child = this.child
    this.child = null
    child.kill('SIGTERM')
    const e = await this.exited
    if (e.code !== 0) throw new Error(`affinity serve exited with ${e.code ?? e.sig}:\n${this.logs}`)
  }

  // kill ends the process at once, for the end of a failed test.
  kill () {
    if (this.child) this.child.kill('SIGKILL'), this.child = null
  }

  // metric reads one counter of the internal listener's /metrics.
  async metric (name) {
    const r = await fetch(this.api + '/metrics', { headers: { Authorization: 'Bearer browser-test-token' } })
    const m = new RegExp('^' + name.replace(/[{}"]/g, '\\$&') + ' (\\S+)$', 'm').exec(await r.text())
    return m ? +m[1] : 0
  }

  // waitAccepted waits until the collector has stored at least n events
  // since it started; it fails at once when events were dropped as a bot's.
  async waitAccepted (n, timeout = 15000) {
    const end = Date.now() + timeout
    for (;;) {
      const got = await this.metric('affinity_collector_events_accepted_total')
      if (got >= n) return got
      if (await this.metric('affinity_collector_bot_events_dropped_total') > 0) throw new Error('the collector dropped the test browser as a bot')
      if (Date.now() > end) throw new Error(`the collector accepted ${got} events, want ${n}:\n${this.logs}`)
      await sleep(100)
    }
  }

  // dump stops the service and returns every event the log durably holds
  // (affinity dump-log), in log order.
  async dump () {
    await this.stop()
    const r = spawnSync(this.bin, ['dump-log', '--data', this.data], { encoding: 'utf8' })
    if (r.status !== 0 || r.stderr) {
      // A trimmed log (the builder consumed it) cannot prove what was stored.
      throw new Error(`affinity dump-log failed (${r.status}): ${r.stderr}`)
    }
    return r.stdout.split('\n').filter(Boolean).map(l => JSON.parse(l))
  }
}

export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

// staticServer serves the shop's pages on 127.0.0.1 (another origin than the
// collector). pages maps a path to {html, headers} or to a function
// (req, res) → void.
export async function staticServer (pages) {
  const srv = http.createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname
    const p = pages[path]
    if (path === '/favicon.ico') return res.writeHead(204).end()
    if (!p) return res.writeHead(404).end('no such page')
    if (typeof p === 'function') return p(req, res)
    res.writeHead(200, Object.assign({ 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' }, p.headers)).end(p.html)
  })
  await new Promise(resolve => srv.listen(0, '127.0.0.1', resolve))
  srv.base = 'http://127.0.0.1:' + srv.address().port
  srv.closeAll = () => new Promise(resolve => { srv.closeAllConnections(); srv.close(resolve) })
  return srv
}

// stub is the loader a shop pastes (src/loader.html) with the collector's
// sdk.js, then init and the page's own calls, all in one inline script so
// that the calls are queued before sdk.js can load.
export function stub (collector, site, calls = '', { endpoint, nonce } = {}) {
  const init = endpoint ? `{site:${JSON.stringify(site)},endpoint:${JSON.stringify(endpoint)}}` : `{site:${JSON.stringify(site)}}`
  return `<script${nonce ? ` nonce="${nonce}"` : ''}>
window.affinity=window.affinity||function(){(affinity.q=affinity.q||[]).push(arguments)};
(function(d,s){s=d.createElement("script");s.async=1;s.src=${JSON.stringify(collector + '/sdk.js')};d.head.appendChild(s)})(document);
affinity("init",${init});
${calls}
</script>`
}

export const page = (body, head = '') => `<!doctype html><html><head><meta charset="utf-8"><title>test</title>${head}</head><body>${body}</body></html>`

// launch starts Chromium headless with the flags of the brief.
export async function launch () {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: run "make browser-deps" (apt-get install -y chromium)`)
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Playwright's per-context userAgent does not reach beacons sent while a
    // page unloads: the browser-wide flag covers them.
    args: ['--user-agent=' + UA, '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  })
}

// newContext is a fresh profile (empty cookies, storage and cache) that
// records every request to the collector's event endpoints in ctx.sent: 
// {url, type ('fetch'|'ping'|'image'), status, body (the parsed batch)}.
export async function newContext (browser, opts = {}) {
  const ctx = await browser.newContext(Object.assign({ userAgent: UA }, opts))
  ctx.sent = []
  ctx.on('request', req => {
    const u = req.url()
    if (!/\/v1\/(events|p\.gif)/.test(u)) return
    let body = null
    try { body = JSON.parse(req.postData() || 'null') } catch (e) {}
    const rec = { url: u, type: req.resourceType(), status: 0, body }
    ctx.sent.push(rec)
    req.response().then(r => { rec.status = r ? r.status() : -1 }, () => { rec.status = -1 })
  })
  ctx.on('requestfailed', req => {
    const rec = ctx.sent.find(r => r.url === req.url() && r.status === 0)
    if (rec) rec.status = -1
  })
  return ctx
}

// checkout orders the demo shop's cart with email and waits for the thanks.
export async function checkout (pg, email) {
  await pg.click('#cart-link')
  await pg.click('text=Go to checkout')
  await pg.fill('#email', email)
  await pg.click('#order')
  await pg.waitForSelector('text=Thank you!')
}

// queue returns the snippet's pending events (localStorage _aff_q).
export const queue = pg => pg.evaluate(() => JSON.parse(localStorage.getItem('_aff_q') || '[]'))

// waitQueueEmpty waits until the snippet has no pending event.
export const waitQueueEmpty = (pg, timeout = 15000) =>
  pg.waitForFunction(() => (JSON.parse(localStorage.getItem('_aff_q') || 'null') || []).length === 0 && localStorage.getItem('_aff_v'), null, { timeout, polling: 100 })

// visitorOf reads the snippet's visitor id (cookie _aff_v) in the page.
export const visitorOf = pg => pg.evaluate(() => (document.cookie.match(/(?:^|; )_aff_v=([^;]+)/) || [])[1])

export const readDist = () => {
  const p = join(SDK_DIR, 'dist', 'sdk.js')
  if (!existsSync(p)) throw new Error('no dist/sdk.js: run "npm run build" first')
  return readFileSync(p)
}
