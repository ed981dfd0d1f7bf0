// The affinity console: plain JS, calling only the public query API with the
// token from sessionStorage (never in a URL). See profile/console/doc.go.
const $ = (id) => document.getElementById(id);
const store = window.sessionStorage;
const pages = ['segments', 'editor', 'lookup'];
// Campaigns: the page comes with the campaigns API (/v1/campaigns), a later
// step of issue 14; add it to pages and the nav then.

class Unauthorized extends Error {}

// api calls the query API; it throws Unauthorized on 401 and an Error with
// the one-line reason and .status on any other refusal.
async function api(method, path, body) {
  const r = await fetch(path, {
    method,
    headers: { Authorization: 'Bearer ' + (store.getItem('token') || ''), 'Content-Type': 'text/plain' },
    body,
  });
  const text = await r.text();
  if (r.status === 401) throw new Unauthorized(text);
  if (!r.ok) { const e = new Error(text.trim()); e.status = r.status; throw e; }
  return text ? JSON.parse(text) : null;
}

const site = () => store.getItem('site') || 'demo';
const seg = (name) => '/v1/segments/' + encodeURIComponent(site()) + (name ? '/' + encodeURIComponent(name) : '');

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : String(k));
  return e;
}

function say(msg) { const a = $('alert'); a.textContent = msg; a.hidden = !msg; }

function showLogin(msg) {
  for (const p of pages) $(p).hidden = true;
  $('nav').hidden = true;
  $('login').hidden = false;
  say(msg || '');
  $('token').focus();
}

// guard runs a page's work, turning a 401 into the login form.
async function guard(fn) {
  try { await fn(); } catch (e) {
    if (e instanceof Unauthorized) { store.removeItem('token'); showLogin('wrong or missing token'); return; }
    say(e.message);
  }
}

function route() {
  if (!store.getItem('token')) { showLogin(); return; }
  const page = pages.includes(location.hash.slice(1)) ? location.hash.slice(1) : 'segments';
  $('login').hidden = true;
  $('nav').hidden = false;
  say('');
  for (const p of pages) $(p).hidden = p !== page;
  // Keyboard and screen reader users land on the page they opened.
  if (document.activeElement === document.body || document.activeElement.closest('#nav, #login')) $(page).querySelector('h2').focus();
  for (const a of $('nav').querySelectorAll('a')) {
    if (a.getAttribute('href') === '#' + page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (page === 'segments') guard(loadSegments);
}

// --- Segments ---

function backfillText(b) {
  if (!b) return '';
  if (b.state === 'running') return b.total == null ? 'collecting…' : `${b.scanned} / ${b.total}`;
  return b.state;
}

// chart draws sizes over time as an inline SVG polyline, ending at the size
// now: the history samples once a minute, and a line of one point (a new
// segment, a new server) would draw nothing.
function chart(points, label, now) {
  const ns = 'http://www.w3.org/2000/svg';
  points = points.concat({ at: new Date().toISOString(), size: now });
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('class', 'chart');
  svg.setAttribute('viewBox', '0 0 180 40');
  svg.setAttribute('role', 'img');
  const sizes = points.map((p) => p.size);
  const max = Math.max(1, ...sizes), min = Math.min(0, ...sizes);
  const title = document.createElementNS(ns, 'title');
  title.textContent = `${label}: ${sizes[0]} → ${now} over ${points.length - 1} samples and now`;
  svg.append(title);
  const t0 = Date.parse(points[0].at), t1 = Date.parse(points[points.length - 1].at);
  const xy = points.map((p) => [t1 > t0 ? (Date.parse(p.at) - t0) / (t1 - t0) * 178 + 1 : 1, 39 - (p.size - min) / (max - min) * 38]);
  if (xy.length === 1 || t1 <= t0) xy.push([179, xy[xy.length - 1][1]]);
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', xy.map(([x, y]) => x.toFixed(1) + ',' + y.toFixed(1)).join(' '));
  svg.append(line);
  return svg;
}

// changes24h counts the entries and exits of the last 24 h off the change
// feed, paging by its cursor (at most 20 pages of 1000).
async function changes24h(name) {
  const since = Date.now() - 24 * 3600e3;
  let after = '0', entered = 0, left = 0;
  for (let page = 0; page < 20; page++) {
    const r = await api('GET', seg(name) + '/changes?limit=1000&after=' + after);
    for (const c of r.changes) {
      if (c.at_ms < since) continue;
      if (c.change === 'entered') entered++; else left++;
    }
    if (r.changes.length < 1000) break;
    after = r.cursor;
  }
  return { entered, left };
}

async function loadSegments() {
  $('siteName').textContent = '— site ' + site();
  const list = await api('GET', seg());
  const rows = $('segRows');
  rows.replaceChildren();
  $('segEmpty').hidden = list.segments.length > 0;
  list.segments.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const s of list.segments) {
    const tr = el('tr', { 'data-segment': s.name },
      el('th', { scope: 'row' }, el('a', { href: '#editor', class: 'edit', title: 'Edit ' + s.name }, s.name)),
      el('td', { class: 'num size' }, s.size),
      el('td', { class: 'num entered' }, '…'),
      el('td', { class: 'num left' }, '…'),
      el('td', { class: 'backfill' }, backfillText(s.backfill)),
      el('td', { class: 'chart' }));
    // The name opens the segment in the rule editor.
    tr.querySelector('a.edit').addEventListener('click', () => {
      $('segName').value = s.name;
      $('rule').value = s.rule;
      clearRuleError();
      $('previewOut').replaceChildren();
      $('backfill').textContent = '';
    });
    rows.append(tr);
    changes24h(s.name).then((c) => {
      tr.querySelector('.entered').textContent = c.entered;
      tr.querySelector('.left').textContent = c.left;
    }, () => {});
    api('GET', seg(s.name) + '/history?step=10m').then((h) => tr.querySelector('td.chart').append(chart(h.points, s.name, s.size)), () => {});
  }
}

// --- Rule editor ---

// showRuleError underlines the token at the 1-based position pos ("at N:"
// of the API's 400) in the mirror under the rule.
function showRuleError(rule, msg) {
  $('ruleError').textContent = msg;
  const mirror = $('ruleMirror');
  mirror.replaceChildren();
  const m = /\bat (\d+):/.exec(msg);
  if (!m) return;
  const i = Math.min(Math.max(Number(m[1]) - 1, 0), rule.length);
  let j = i;
  while (j < rule.length && !/\s/.test(rule[j])) j++;
  if (j === i) j = i + 1;
  const mark = el('mark', { 'data-pos': m[1] }, rule.slice(i, j) || ' ');
  mirror.append(rule.slice(0, i), mark, rule.slice(j));
}

function clearRuleError() { $('ruleError').textContent = ''; $('ruleMirror').replaceChildren(); }

// score cuts (not rounds) a score to 3 decimals: a decayed 0.99999 shown as
// 1 would seem to pass a rule's >= 1.
const score = (v) => Math.floor(v * 1000) / 1000;

// factsText writes a profile's facts one per line: durations (ms in the
// API: since(), first(), until_birthday) as 2d 3h, null ones as never,
// numbers by score.
function factsText(facts) {
  const dur = (ms) => {
    const units = [['d', 864e5], ['h', 36e5], ['m', 6e4], ['s', 1e3]];
    const parts = [];
    for (const [u, n] of units) if (ms >= n && parts.length < 2) { parts.push(Math.floor(ms / n) + u); ms %= n; }
    return parts.join(' ') || '0s';
  };
  return Object.entries(facts).map(([k, v]) => {
    if (/^(since|first)\(|^until_/.test(k)) return `${k} = ${v == null ? 'never' : dur(v)}`;
    return `${k} = ${typeof v === 'number' ? score(v) : v}`;
  }).join('\n');
}

async function preview() {
  const rule = $('rule').value.trim();
  clearRuleError();
  $('previewOut').replaceChildren();
  try {
    const p = await api('POST', seg() + '/_preview?sample=10', rule);
    const out = $('previewOut');
    out.append(el('p', { id: 'previewCount' }, `${p.count} profiles match now` + (p.exact ? '' : ` (at least: stopped after ${p.scanned} profiles)`) + (p.from_index ? ', found through the interest index' : '')));
    if (p.sample.length) {
      const tb = el('tbody');
      for (const m of p.sample) tb.append(el('tr', {}, el('td', {}, m.email || m.visitor), el('td', { class: 'facts' }, factsText(m.facts))));
      out.append(el('div', { class: 'tablewrap' }, el('table', {}, el('caption', {}, 'Sample'), el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Visitor'), el('th', { scope: 'col' }, 'Facts'))), tb)));
    }
  } catch (e) {
    if (e.status === 400) { showRuleError(rule, e.message); return; }
    throw e;
  }
}

async function save() {
  const name = $('segName').value.trim(), rule = $('rule').value.trim();
  clearRuleError();
  try {
    await api('PUT', seg(name), rule);
  } catch (e) {
    if (e.status === 400) { showRuleError(rule, e.message); return; }
    throw e;
  }
  const status = $('backfill');
  for (;;) {
    const d = await api('GET', seg(name));
    status.textContent = `Saved ${name}: size ${d.size}, backfill ${backfillText(d.backfill)}`;
    if (d.backfill.state === 'done') return;
    await new Promise((r) => setTimeout(r, 500));
  }
}

// --- Visitor / person lookup ---

const uuidRe = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function interestBars(interests) {
  const out = [];
  for (const [dim, values] of Object.entries(interests || {})) {
    const grid = el('div', { class: 'bars' });
    for (const v of values.slice(0, 8)) {
      const pct = Math.round(v.share * 100);
      const bar = el('div', { class: 'bar', role: 'img', 'aria-label': `${v.value}: ${pct}% of ${dim}` });
      bar.style.width = Math.max(1, pct) + '%'; // CSSOM: allowed by the CSP, unlike a style attribute
      grid.append(el('span', {}, v.value), bar, el('span', { class: 'num' }, score(v.score)));
    }
    out.push(el('h4', {}, dim), grid);
  }
  return out;
}

async function lookup() {
  const who = $('who').value.trim();
  const out = $('lookupOut');
  out.replaceChildren();
  const s = encodeURIComponent(site());
  let prof, visitors;
  try {
    if (uuidRe.test(who)) {
      prof = await api('GET', `/v1/visitors/${s}/${who}`);
      visitors = [who];
    } else {
      prof = await api('GET', `/v1/people/${s}/${encodeURIComponent(who)}`);
      visitors = (prof.visitors || []).slice(0, 20);
    }
  } catch (e) {
    if (e.status === 404) { out.append(el('p', {}, `No profile for ${who}.`)); return; }
    throw e;
  }
  out.append(el('h3', {}, prof.email || who));
  if (prof.last_seen) out.append(el('p', {}, `first seen ${prof.first_seen}, last seen ${prof.last_seen}`));
  out.append(el('h3', {}, 'Interests'), ...interestBars(prof.interests));
  const segs = new Map();
  let next = null;
  for (const v of visitors) {
    const r = await api('GET', `/v1/visitors/${s}/${v}/segments`);
    for (const m of r.segments) if (!segs.has(m.name) || segs.get(m.name) > m.entered) segs.set(m.name, m.entered);
    if (r.next_change && (!next || r.next_change < next)) next = r.next_change;
  }
  const ul = el('ul', { id: 'visitorSegments' });
  for (const [name, entered] of segs) ul.append(el('li', { 'data-segment': name }, `${name} — entered ${entered}`));
  out.append(el('h3', {}, 'Segments'), segs.size ? ul : el('p', {}, 'In no segment.'));
  out.append(el('p', {}, next ? `Next time-driven change: ${next}` : 'No time-driven change due.'));
}

// --- wiring ---

$('login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  store.setItem('token', $('token').value);
  store.setItem('site', $('site').value.trim());
  $('token').value = '';
  if (location.hash) route(); else location.hash = '#segments';
});
$('logout').addEventListener('click', () => { store.removeItem('token'); showLogin(); });
$('preview').addEventListener('click', () => guard(preview));
$('ruleForm').addEventListener('submit', (ev) => { ev.preventDefault(); guard(save); });
$('rule').addEventListener('input', clearRuleError);
$('lookupForm').addEventListener('submit', (ev) => { ev.preventDefault(); guard(lookup); });
$('site').value = site();
window.addEventListener('hashchange', route);
// A click on the page shown changes no hash: it reloads the page's data
// (the sizes move as the builder works).
$('nav').addEventListener('click', (ev) => {
  const a = ev.target.closest('a');
  if (a && a.getAttribute('href') === location.hash) route();
});
route();
