// The console (/console/ on the internal listener of `affinity serve --demo`),
// driven in Chromium like a marketer would: log in, write a rule with a typo,
// fix it, preview, save, follow the backfill; then click through the demo
// shop in another browser and see the console's numbers move. Screenshots
// of every page go to test-output/console/ (gitignored).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { SDK_DIR, UA, buildBinary, Service, launch, newContext, waitQueueEmpty, visitorOf, checkout } from './harness.mjs'

const TOKEN = 'browser-test-token' // Service's --api-token
const SHOTS = join(SDK_DIR, 'test-output', 'console')
const SEGMENT = 'nutrilon-fans'
const TYPO = 'interest(brand, "Nutrilon") >= 0.5 and since(view) <= 30'
const RULE = 'interest(brand, "Nutrilon") >= 0.5 and since(view) <= 30d'
const SEEDED = 3 // visitors who viewed a Nutrilon product before the test opens the console

let bin, browser
before(async () => {
  mkdirSync(SHOTS, { recursive: true })
  bin = buildBinary()
  browser = await launch()
})
after(() => browser?.close())

// seed posts one Nutrilon view for each of n new visitors, and a Lego view
// for one more (who must not match), straight to the collector.
async function seed (svc, n) {
  const ts = Date.now()
  for (let i = 0; i <= n; i++) {
    const product = i < n
      ? { id: 'nutrilon-1', brand: 'Nutrilon', category: 'baby/food', age: '0-1', price: 12.5 }
      : { id: 'lego-1', brand: 'Lego', category: 'toys', age: '6-9', price: 40 }
    const r = await fetch(svc.collector + '/v1/events', {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain', 'User-Agent': UA },
      body: JSON.stringify({ site: 'demo', v: randomUUID(), events: [{ id: randomUUID(), t: 'view', ts, product }] }),
    })
    assert.equal(r.status, 202, `POST /v1/events: ${r.status} ${await r.text()}`)
  }
}

// apiText calls the query API from the test, as an email tool would, and
// returns the answer's text; api parses it as JSON.
async function apiText (svc, method, path, body, headers = {}) {
  const r = await fetch(svc.api + path, { method, body, headers: { Authorization: 'Bearer ' + TOKEN, ...headers } })
  const text = await r.text()
  assert.ok(r.ok, `${method} ${path}: ${r.status} ${text}`)
  return text
}
const api = async (svc, method, path, body, headers) => JSON.parse(await apiText(svc, method, path, body, headers))

// until polls cond every 100 ms for up to 60 s (the machine may be loaded).
async function until (what, cond) {
  const end = Date.now() + 60000
  while (!(await cond())) {
    assert.ok(Date.now() < end, 'timed out waiting until ' + what)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

// noOverflow asserts the page fits the viewport's width, at 390 and 1440 px,
// and saves a screenshot of each.
async function noOverflow (pg, name) {
  for (const width of [390, 1440]) {
    await pg.setViewportSize({ width, height: 900 })
    const { scroll, inner } = await pg.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth }))
    assert.ok(scroll <= inner, `${name} at ${width} px: scrollWidth ${scroll} > innerWidth ${inner}`)
    await pg.screenshot({ path: join(SHOTS, `${name}-${width}.png`), fullPage: true })
  }
}

// consolePage opens path of the console in a new page of ctx; errors
// collects its script errors and console errors. The browser logs each
// refusal the test asks for (a status matching refusals: 400, 401, 404);
// any other console error (a CSP violation, a script error) fails the test.
async function consolePage (ctx, svc, path, refusals) {
  const errors = []
  const pg = await ctx.newPage()
  pg.on('pageerror', e => errors.push(e.message))
  pg.on('console', m => { if (m.type() === 'error' && !refusals.test(m.text())) errors.push(m.text()) })
  await pg.goto(svc.api + path)
  return { pg, errors }
}

// pressTo tabs from the focused element until the element matching sel has
// the focus (at most 20 presses), as a keyboard user would.
async function pressTo (pg, sel) {
  for (let i = 0; i < 20; i++) {
    if (await pg.evaluate(s => document.activeElement === document.querySelector(s), sel)) return
    await pg.keyboard.press('Tab')
  }
  assert.fail(`${sel} is not reachable with Tab`)
}

// sizeOnSegmentsPage clicks Segments in the nav (also when it is the page
// shown: that reloads it) and reads a row's size once the rows are new.
async function sizeOnSegmentsPage (pg, name) {
  await pg.$$eval('#segRows tr', rs => rs.forEach(r => r.setAttribute('data-stale', '')))
  await pg.click('#nav a[href="#segments"]')
  const row = `#segRows tr[data-segment="${name}"]:not([data-stale]) .size`
  await pg.waitForSelector(row)
  return Number(await pg.textContent(row))
}

// lookupSegments looks a visitor up on the Visitor / person page and
// returns the names of its segments.
async function lookupSegments (pg, visitor) {
  await pg.click('#nav a[href="#lookup"]')
  await pg.fill('#who', visitor)
  await pg.press('#who', 'Enter')
  await pg.waitForSelector('#lookupOut h3 >> text=Segments')
  return pg.$$eval('#visitorSegments li', ls => ls.map(l => l.dataset.segment))
}

test('console: login, rule editor with preview and backfill, segments and lookup moving with the demo shop', async t => {
  const svc = await new Service(bin, { sites: ['demo'], demo: true }).start()
  const ctx = await browser.newContext({ userAgent: UA, viewport: { width: 1440, height: 900 } })
  t.after(async () => { svc.kill(); await ctx.close() })
  await seed(svc, SEEDED)
  await svc.waitAccepted(SEEDED + 1)
  await until('the builder applied the seeded views', async () => (await api(svc, 'POST', '/v1/segments/demo/_preview', RULE)).count === SEEDED)

  const { pg, errors } = await consolePage(ctx, svc, '/console/', /status of 40[014] /)

  // Login with the keyboard; the page focuses the token field.
  await pg.waitForSelector('#login:not([hidden])')
  await noOverflow(pg, 'login')
  assert.equal(await pg.evaluate(() => document.activeElement.id), 'token')
  assert.equal(await pg.isVisible('#nav'), false, 'the nav shows before login')
  await pg.keyboard.type('wrong-token')
  const refused = pg.waitForResponse(r => r.url().includes('/v1/segments/demo') && r.status() === 401)
  await pg.keyboard.press('Enter')
  await refused
  await pg.waitForSelector('#alert:not([hidden])')
  assert.equal(await pg.textContent('#alert'), 'wrong or missing token')
  assert.equal(await pg.isVisible('#login'), true)
  assert.equal(await pg.isVisible('#nav'), false, 'the nav shows with the login form')
  assert.equal(await pg.evaluate(() => sessionStorage.getItem('token')), null, 'a refused token stays in the session')
  await pg.screenshot({ path: join(SHOTS, 'login-refused.png') })

  await pressTo(pg, '#token')
  await pg.keyboard.type(TOKEN)
  await pressTo(pg, '#login button[type=submit]')
  await pg.keyboard.press('Enter')
  await pg.waitForSelector('#segments:not([hidden])')
  assert.equal(await pg.isVisible('#alert'), false)
  assert.ok(!pg.url().includes(TOKEN), 'the token is in the URL')

  // The demo's reference segments, each with its size, changes, backfill and chart.
  await pg.waitForFunction(() => document.querySelectorAll('#segRows tr').length === 9)
  await pg.waitForFunction(() => [...document.querySelectorAll('#segRows td.entered')].every(td => td.textContent !== '…'))
  await pg.waitForFunction(() => document.querySelectorAll('#segRows svg.chart').length === 9)
  const listed = await pg.$$eval('#segRows tr', rs => rs.map(r => r.dataset.segment))
  assert.deepEqual(listed, [...listed].sort(), 'segments in order of name')
  assert.ok(listed.includes('abandoned-cart-24h') && listed.includes('mums-0-3-nutrilon-merries-philips'), `segments: ${listed}`)
  // A new server has no sample yet: the chart still draws the size now.
  const lines = await pg.$$eval('#segRows svg.chart polyline', ps => ps.map(p => p.getAttribute('points').split(' ').length))
  assert.deepEqual(lines, Array(9).fill(2), 'every chart draws a line')
  assert.equal(await pg.textContent('#segRows tr[data-segment="abandoned-cart-24h"] .size'), '0')
  await noOverflow(pg, 'segments')

  // A segment's name opens it in the rule editor.
  await pg.click('#segRows tr[data-segment="abandoned-cart-24h"] a.edit')
  await pg.waitForSelector('#editor:not([hidden])')
  assert.equal(await pg.inputValue('#segName'), 'abandoned-cart-24h')
  assert.equal(await pg.inputValue('#rule'), 'since(cart) <= 24h and since(purchase) > since(cart)')

  // The rule editor, by keyboard: a typo is underlined at its position.
  await pg.focus('#segName')
  await pg.keyboard.press('Control+A')
  await pg.keyboard.type(SEGMENT)
  await pg.fill('#rule', '')
  await pressTo(pg, '#rule')
  await pg.keyboard.type(TYPO)
  await pressTo(pg, '#preview')
  const badPreview = pg.waitForResponse(r => r.url().includes('/_preview'))
  await pg.keyboard.press('Enter')
  assert.equal((await badPreview).status(), 400)
  await pg.waitForSelector('#ruleMirror mark')
  const pos = TYPO.lastIndexOf('30') + 1
  assert.match(await pg.textContent('#ruleError'), new RegExp(`^invalid rule.*at ${pos}: expected a duration`))
  assert.equal(await pg.getAttribute('#ruleMirror mark', 'data-pos'), String(pos))
  assert.equal(await pg.textContent('#ruleMirror mark'), '30')
  assert.equal(await pg.textContent('#ruleMirror'), TYPO)
  await noOverflow(pg, 'editor-error')

  // Fixed, the preview counts what the API's own _preview counts.
  await pg.fill('#rule', RULE)
  assert.equal(await pg.textContent('#ruleError'), '', 'the error stays after an edit')
  await pressTo(pg, '#preview')
  await pg.keyboard.press('Enter')
  await pg.waitForSelector('#previewCount')
  const want = await api(svc, 'POST', '/v1/segments/demo/_preview', RULE)
  assert.equal(want.count, SEEDED)
  assert.match(await pg.textContent('#previewCount'), new RegExp(`^${want.count} profiles match now`))
  assert.equal(await pg.$$eval('#previewOut tbody tr', rs => rs.length), SEEDED)
  const facts = (await pg.textContent('#previewOut tbody tr td.facts')).split('\n')
  assert.equal(facts.length, 2, `facts: ${facts}`)
  assert.match(facts[0], /^interest\(brand, "Nutrilon"\) = 0\.999$/, "a score just under 1 is not shown as 1")
  assert.match(facts[1], /^since\(view\) = \d+s$/)
  await noOverflow(pg, 'editor-preview')

  // Save (Enter on Save) and follow the backfill to done.
  await pressTo(pg, '#save')
  await pg.keyboard.press('Enter')
  await pg.waitForFunction(() => /backfill done$/.test(document.getElementById('backfill').textContent), null, { timeout: 60000 })
  assert.equal(await pg.textContent('#backfill'), `Saved ${SEGMENT}: size ${SEEDED}, backfill done`)
  assert.equal((await api(svc, 'GET', '/v1/segments/demo/' + SEGMENT)).size, want.count)
  await pg.screenshot({ path: join(SHOTS, 'editor-saved.png'), fullPage: true })
  assert.equal(await sizeOnSegmentsPage(pg, SEGMENT), SEEDED)

  // Another browser clicks through the demo shop: a Nutrilon product viewed...
  const shopCtx = await newContext(browser)
  t.after(() => shopCtx.close())
  const shop = await shopCtx.newPage()
  await shop.goto(svc.collector + '/demo/')
  await shop.click('#filters >> text=Nutrilon')
  await shop.click('#grid .card[data-id="nutrilon-1"]')
  await shop.waitForSelector('#add')
  await waitQueueEmpty(shop)
  const visitor = await visitorOf(shop)
  assert.match(visitor, /^[0-9a-f-]{36}$/)

  // ...moves the console's size, and the lookup shows the visitor in it.
  await until('the console shows the shopper in ' + SEGMENT, async () => await sizeOnSegmentsPage(pg, SEGMENT) === SEEDED + 1)
  await pg.screenshot({ path: join(SHOTS, 'segments-after-shop.png'), fullPage: true })
  let segs = await lookupSegments(pg, visitor)
  assert.ok(segs.includes(SEGMENT) && !segs.includes('abandoned-cart-24h'), `segments after a view: ${segs}`)

  // Added to the cart: the visitor enters the abandoned cart.
  await shop.click('#add')
  await waitQueueEmpty(shop)
  await until('the lookup shows the abandoned cart', async () => (segs = await lookupSegments(pg, visitor)).includes('abandoned-cart-24h'))
  assert.ok(segs.includes(SEGMENT), `segments after the cart: ${segs}`)
  assert.equal(await sizeOnSegmentsPage(pg, 'abandoned-cart-24h'), 1)
  await pg.click('#nav a[href="#lookup"]')
  await pg.waitForSelector('#lookupOut .bar')
  await noOverflow(pg, 'lookup')

  // Checked out with an email: the person, looked up by it, left the cart.
  await checkout(shop, 'parent@example.com')
  await waitQueueEmpty(shop)
  await until('the person by email left the abandoned cart', async () => {
    segs = await lookupSegments(pg, 'Parent@Example.com')
    return segs.includes(SEGMENT) && !segs.includes('abandoned-cart-24h')
  })
  assert.equal(await pg.textContent('#lookupOut h3'), 'parent@example.com')
  await noOverflow(pg, 'lookup-person')

  // Nobody by that email: the page says so.
  await pg.fill('#who', 'nobody@example.com')
  await pg.press('#who', 'Enter')
  await pg.waitForSelector('#lookupOut >> text=No profile for nobody@example.com.')

  // Logging out forgets the token.
  await pg.click('#logout')
  assert.equal(await pg.evaluate(() => sessionStorage.getItem('token')), null)
  assert.equal(await pg.isVisible('#login'), true)
  assert.equal(await pg.isVisible('#nav'), false)
  assert.deepEqual(errors, [])
})

// identifyViews posts, for each email, a new visitor's Lego view and its
// identify with that email, straight to the collector: each becomes a
// member of a Lego segment, with an email a campaign can freeze.
async function identifyViews (svc, emails) {
  const ts = Date.now()
  for (const email of emails) {
    const r = await fetch(svc.collector + '/v1/events', {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain', 'User-Agent': UA },
      body: JSON.stringify({
        site: 'demo',
        v: randomUUID(),
        events: [
          { id: randomUUID(), t: 'view', ts, product: { id: 'lego-1', brand: 'Lego', category: 'toys', age: '6-9', price: 40 } },
          { id: randomUUID(), t: 'identify', ts: ts + 1, email },
        ],
      }),
    })
    assert.equal(r.status, 202, `POST /v1/events: ${r.status} ${await r.text()}`)
  }
}

// recipients reads a campaign's treated (or control) recipients from the
// CSV export: [{email, arm, variant, token}].
async function recipients (svc, id, group = 'treated') {
  const csv = await apiText(svc, 'GET', `/v1/campaigns/demo/${id}/recipients?format=csv&group=${group}`)
  const [head, ...rows] = csv.trim().split('\n')
  assert.equal(head, 'email,arm,variant,token')
  return rows.map(l => { const [email, arm, variant, token] = l.split(','); return { email, arm, variant, token } })
}

// engage hits the collector's open pixel (opens) or click redirect (the
// rest) for each recipient, as a mail client would.
async function engage (svc, rs, click = false) {
  for (const r of rs) {
    const u = click
      ? `${svc.collector}/e/c/${r.token}?to=${encodeURIComponent('https://shop.example/p/lego-1')}`
      : `${svc.collector}/e/o/${r.token}.gif`
    const res = await fetch(u, { redirect: 'manual' })
    assert.equal(res.status, click ? 302 : 200, `${u}: ${res.status}`)
    if (click) assert.match(res.headers.get('location'), /^https:\/\/shop\.example\/p\/lego-1\?aff_t=/)
  }
}

// groupFigures reads a report table's figures of one group row.
const groupFigures = (pg, arm, group, variant) => pg.$$eval(
  `#reportBody table.report[data-arm="${arm}"] tr[data-group="${group}"][data-variant="${variant}"] td`,
  tds => Object.fromEntries(tds.map(td => [td.dataset.field, td.textContent])))

test('console: the Campaigns page shows the report API\'s figures, its uplift chart and its CSV, refreshing while live', async t => {
  const svc = await new Service(bin, { sites: ['demo'], demo: true, args: ['--redirect-origin', 'demo=https://shop.example'] }).start()
  const ctx = await browser.newContext({ userAgent: UA, viewport: { width: 1440, height: 900 }, acceptDownloads: true })
  t.after(async () => { svc.kill(); await ctx.close() })

  // Two audiences: a segment of identified Lego viewers and a CRM list.
  const fans = Array.from({ length: 40 }, (_, i) => `fan${i}@example.com`)
  const crm = Array.from({ length: 40 }, (_, i) => `crm${i}@example.com`)
  await api(svc, 'PUT', '/v1/segments/demo/lego-fans', 'interest(brand, "Lego") >= 0.5')
  await api(svc, 'PUT', '/v1/lists/demo/crm-test', 'email\n' + crm.join('\n') + '\n', { 'Content-Type': 'text/csv' })
  await identifyViews(svc, fans)
  await until('the Lego viewers are members with their emails', async () => (await api(svc, 'GET', '/v1/segments/demo/lego-fans')).size === fans.length)

  const { pg, errors } = await consolePage(ctx, svc, '/console/#campaigns', /status of 40[01] /)
  await pg.waitForSelector('#login:not([hidden])')
  await pg.fill('#token', TOKEN)
  await pg.press('#token', 'Enter')

  // No campaign yet: the page says how to create one.
  await pg.waitForSelector('#campEmpty:not([hidden])')
  assert.match(await pg.textContent('#campCurl'), new RegExp(`-X POST ${svc.api}/v1/campaigns/demo --data-binary`))
  assert.equal(await pg.isVisible('#report'), false)
  assert.equal(await pg.isVisible('#campList'), false, 'an empty table of campaigns')
  await noOverflow(pg, 'campaigns-empty')

  // The form: two arms (a segment, a list with two variants), a window the
  // API refuses and then the right one.
  await pg.click('#newCampaign summary')
  await pg.waitForSelector('#campArms select option[value="list:crm-test"]', { state: 'attached' })
  await pg.fill('#campName', 'spring-promo')
  await pg.fill('#campArms .armrow:nth-of-type(1) .armName', 'behaviour')
  await pg.selectOption('#campArms .armrow:nth-of-type(1) .armAudience', 'segment:lego-fans')
  await pressTo(pg, '#addArm')
  await pg.keyboard.press('Enter')
  assert.equal(await pg.evaluate(() => document.activeElement.className), 'armName', 'the new arm\'s name is not focused')
  await pg.keyboard.type('crm')
  await pg.selectOption('#campArms .armrow:nth-of-type(2) .armAudience', 'list:crm-test')
  await pg.fill('#campArms .armrow:nth-of-type(2) .armVariants', '10%, 20%')
  await pg.fill('#campHoldout', '20')
  await pg.fill('#campWindow', '7x')
  await noOverflow(pg, 'campaigns-form')
  const badCreate = pg.waitForResponse(r => r.url().endsWith('/v1/campaigns/demo') && r.request().method() === 'POST')
  await pg.click('#campCreate')
  assert.equal((await badCreate).status(), 400)
  await pg.waitForFunction(() => document.getElementById('campError').textContent !== '')
  assert.match(await pg.textContent('#campError'), /^invalid window "7x": /)
  assert.deepEqual((await api(svc, 'GET', '/v1/campaigns/demo')).campaigns, [], 'a refused campaign was created')
  await pg.fill('#campWindow', '7d')
  await pg.click('#campCreate')
  await pg.waitForSelector('#campRows tr[aria-current="true"]')
  const [c, ...more] = (await api(svc, 'GET', '/v1/campaigns/demo')).campaigns
  assert.equal(more.length, 0)
  assert.deepEqual([c.name, c.holdout, c.window], ['spring-promo', 20, '7d'])
  assert.deepEqual(c.arms.map(a => [a.name, a.segment ?? a.list, a.variants]), [['behaviour', 'lego-fans', undefined], ['crm', 'crm-test', ['10%', '20%']]])
  assert.equal(await pg.getAttribute('#campRows tr[aria-current="true"]', 'data-campaign'), c.id)
  assert.equal(await pg.isVisible('#campEmpty'), false)
  // The focus moves to the new campaign's report.
  await pg.waitForFunction(() => document.activeElement.id === 'reportTitle')
  assert.equal(await pg.textContent('#reportTitle'), `spring-promo (campaign ${c.id})`)
  const treated = await recipients(svc, c.id)
  const control = await recipients(svc, c.id, 'control')
  assert.equal(treated.length + control.length, fans.length + crm.length)
  assert.ok(control.length > 0 && control.length < treated.length, `control ${control.length} of ${fans.length + crm.length}`)
  // Opens of 10 treated of one arm, 12 of the other (both variants) and 3
  // of the control; clicks of 2 of those and 2 more in each arm (a click
  // without an open counts as opened).
  const behaviour = treated.filter(r => r.arm === 'behaviour')
  const crmTreated = treated.filter(r => r.arm === 'crm')
  await engage(svc, [...behaviour.slice(0, 10), ...crmTreated.slice(0, 12)])
  await engage(svc, control.slice(0, 3))
  await engage(svc, [...behaviour.slice(8, 12), ...crmTreated.slice(10, 14)], true)
  const opened = 10 + 12 + 3 + 2 + 2
  const sum = (r, f) => r.arms.reduce((n, a) => n + a.treated[f] + a.control[f], 0)
  await until('the report counts the opens and clicks', async () => {
    const r = await api(svc, 'GET', `/v1/campaigns/demo/${c.id}/report`)
    return sum(r, 'opened') === opened && sum(r, 'clicked') === 8
  })

  // The campaign listed, opened by keyboard.
  await pg.click('#nav a[href="#campaigns"]')
  await pg.waitForSelector(`#campRows tr[data-campaign="${c.id}"]`)
  assert.equal(await pg.textContent(`#campRows tr[data-campaign="${c.id}"] .recipients`), String(c.recipients))
  assert.equal(await pg.textContent(`#campRows tr[data-campaign="${c.id}"] .state`), 'live')
  await pg.focus('#campaigns h2')
  await pressTo(pg, `#campRows tr[data-campaign="${c.id}"] button.open`)
  await pg.keyboard.press('Enter')
  await pg.waitForSelector('#reportBody table.report')

  // Every group's figures are the report API's.
  const want = await api(svc, 'GET', `/v1/campaigns/demo/${c.id}/report`)
  assert.ok(want.arms[1].treated.variants.every(v => v.opened > 0), 'a variant without opens')
  for (const a of want.arms) {
    const groups = [['treated', '', a.treated], ...(a.treated.variants || []).map(v => ['treated', v.name, v]), ['control', '', a.control]]
    for (const [group, variant, g] of groups) {
      const got = await groupFigures(pg, a.name, group, variant)
      for (const f of ['recipients', 'opened', 'clicked', 'converted', 'orders']) {
        assert.equal(got[f], String(g[f]), `arm ${a.name} ${group} ${variant} ${f}`)
      }
      assert.equal(got.open_rate, g.open_rate == null ? '—' : (g.open_rate * 100).toFixed(1) + '%', `arm ${a.name} ${group} ${variant} open rate`)
    }
  }
  assert.equal(await pg.textContent('#reportEngagement'), want.engagement)
  // No purchase: the interval of the conversion uplift covers 0.
  assert.match(await pg.textContent('#reportBody section[data-arm="behaviour"] p.uplift'), /: no significant difference yet\.$/)
  assert.match(await pg.textContent('#reportBody section[data-arm="crm"] p.vsfirst'), /^Against behaviour: open rate ×\d\.\d\d/)
  // One interval mark per arm, one per variant.
  assert.deepEqual(await pg.$$eval('#reportBody svg.uplift g.interval[data-variant=""]', gs => gs.map(g => g.dataset.arm)), ['behaviour', 'crm'])
  assert.deepEqual(await pg.$$eval('#reportBody svg.uplift g.interval:not([data-variant=""])', gs => gs.map(g => g.dataset.variant)), ['10%', '20%'])
  await noOverflow(pg, 'campaigns')

  // Download CSV: the API's CSV, the token in the header and not in the URL.
  const csvRequest = pg.waitForRequest(r => r.url().includes('/report?format=csv'))
  const download = pg.waitForEvent('download')
  await pressTo(pg, '#reportCSV')
  await pg.keyboard.press('Enter')
  const req = await csvRequest
  assert.ok(!req.url().includes(TOKEN), 'the token is in the CSV URL')
  assert.equal((await req.allHeaders()).authorization, 'Bearer ' + TOKEN)
  const file = await (await download).path()
  assert.equal(readFileSync(file, 'utf8'), await apiText(svc, 'GET', `/v1/campaigns/demo/${c.id}/report?format=csv`))
  assert.equal((await download).suggestedFilename(), `campaign-demo-${c.id}-report.csv`)

  // Live: one more open shows without a click.
  const late = crmTreated[20]
  const before = Number((await groupFigures(pg, late.arm, 'treated', '')).opened)
  await engage(svc, [late])
  await pg.waitForFunction(([arm, n]) => Number(document.querySelector(`#reportBody table.report[data-arm="${arm}"] tr[data-group="treated"][data-variant=""] td[data-field="opened"]`)?.textContent) === n,
    [late.arm, before + 1], { timeout: 60000, polling: 200 })

  // A wrong token: the page says so.
  await pg.evaluate(() => sessionStorage.setItem('token', 'wrong-token'))
  const refused = pg.waitForResponse(r => r.url().includes('/v1/campaigns/demo') && r.status() === 401)
  await pg.click('#nav a[href="#campaigns"]')
  await refused
  await pg.waitForSelector('#alert:not([hidden])')
  assert.equal(await pg.textContent('#alert'), 'wrong or missing token')
  assert.equal(await pg.isVisible('#campaigns'), false)
  await pg.screenshot({ path: join(SHOTS, 'campaigns-refused.png') })
  assert.deepEqual(errors, [])
})
