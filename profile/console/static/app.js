// The affinity console: plain JS, calling only the public query API with the
// token from sessionStorage (never in a URL). See profile/console/doc.go.
const $ = (id) => document.getElementById(id);
const store = window.sessionStorage;
const pages = ['segments', 'campaigns', 'editor', 'lookup'];

class Unauthorized extends Error {}

// apiText calls the query API and returns the answer's text; it throws
// Unauthorized on 401 and an Error with the one-line reason and .status on
// any other refusal.
async function apiText(method, path, body) {
  const r = await fetch(path, {
    method,
    headers: { Authorization: 'Bearer ' + (store.getItem('token') || ''), 'Content-Type': 'text/plain' },
    body,
  });
  const text = await r.text();
  if (r.status === 401) throw new Unauthorized(text);
  if (!r.ok) { const e = new Error(text.trim()); e.status = r.status; throw e; }
  return text;
}

// api calls the query API and parses its JSON answer.
async function api(method, path, body) {
  const text = await apiText(method, path, body);
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
  stopRefresh();
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
  stopRefresh();
  for (const p of pages) $(p).hidden = p !== page;
  // Keyboard and screen reader users land on the page they opened.
  if (document.activeElement === document.body || document.activeElement.closest('#nav, #login')) $(page).querySelector('h2').focus();
  for (const a of $('nav').querySelectorAll('a')) {
    if (a.getAttribute('href') === '#' + page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (page === 'segments') guard(loadSegments);
  if (page === 'campaigns') guard(loadCampaigns);
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

// --- Campaigns ---

// The report of a live campaign is read again every refreshMs while shown.
const refreshMs = 5000;
let refreshTimer = 0;
let reportReads = 0; // counts showReport's reads: only the latest draws and rearms the timer
let shownCampaign = '';

function stopRefresh() { clearTimeout(refreshTimer); refreshTimer = 0; reportReads++; }

const camp = (id) => '/v1/campaigns/' + encodeURIComponent(site()) + (id ? '/' + encodeURIComponent(id) : '');

// figure writes one number of a report: — when undefined (null, a rate of
// no recipients), rates as percentages, revenue with cents. The columns
// and their formats come from the JSON's own keys, so a figure the API
// adds shows without a change here.
function figure(key, v) {
  if (v == null || typeof v !== 'number' || !Number.isFinite(v)) return v == null || typeof v === 'number' ? '—' : String(v);
  if (/_rate$/.test(key)) return (v * 100).toFixed(1) + '%';
  if (/revenue/.test(key)) return v.toFixed(2);
  return String(v);
}

const signed = (v, digits, unit) => (v == null || !Number.isFinite(v) ? '—' : (v > 0 ? '+' : v < 0 ? '−' : '') + Math.abs(v).toFixed(digits) + unit);
const pp = (v) => signed(v == null ? v : v * 100, 2, ' pp');
const pct = (v) => signed(v == null ? v : v * 100, 1, '%');
const interval = (ci, f) => (ci && ci[0] != null && ci[1] != null ? `${f(ci[0])} to ${f(ci[1])}` : '—');

// verdict says in plain words what the conversion uplift's 95% interval
// allows: an interval covering 0 is no evidence either way.
function verdict(c, live) {
  const ci = c.absolute_ci95;
  if (!ci || ci[0] == null || ci[1] == null) return 'not enough recipients to compare';
  if (ci[0] <= 0 && ci[1] >= 0) return live ? 'no significant difference yet' : 'no significant difference';
  return (ci[0] > 0 ? 'converts more' : 'converts less') + ' than the control (95% interval excludes 0)';
}

function upliftText(u, live) {
  const c = u.conversion;
  // The relative uplift is undefined while a group has no conversion.
  const rel = c.relative == null ? 'relative —' : `relative ${pct(c.relative)} (${interval(c.relative_ci95, pct)})`;
  return `Conversion uplift ${pp(c.absolute)} (95% interval ${interval(c.absolute_ci95, pp)}), ${rel}, p = ${c.p_value == null ? '—' : c.p_value.toPrecision(2)}: ${verdict(c, live)}.`;
}

// groupColumns lists a group's figures: the keys holding numbers (or null).
const groupColumns = (g) => Object.keys(g).filter((k) => g[k] === null || typeof g[k] === 'number');

function groupRow(label, g, cols, variant) {
  const tr = el('tr', { 'data-group': label, 'data-variant': variant }, el('th', { scope: 'row' }, variant ? `treated · ${variant}` : label));
  for (const k of cols) tr.append(el('td', { class: 'num', 'data-field': k }, figure(k, g[k])));
  return tr;
}

function armTable(arm) {
  const cols = groupColumns(arm.treated);
  const head = el('tr', {}, el('th', { scope: 'col' }, 'Group'), ...cols.map((k) => el('th', { scope: 'col' }, k.replace(/_/g, ' '))));
  const body = el('tbody', {}, groupRow('treated', arm.treated, cols, ''));
  for (const v of arm.treated.variants || []) body.append(groupRow('treated', v, cols, v.name));
  body.append(groupRow('control', arm.control, cols, ''));
  return el('div', { class: 'tablewrap', tabindex: '0', role: 'region', 'aria-label': `Arm ${arm.name}` },
    el('table', { class: 'report', 'data-arm': arm.name }, el('thead', {}, head), body));
}

// upliftChart draws each arm's (and variant's) absolute conversion uplift
// as a dot with its 95% interval as an error bar around a dashed 0; a row
// without figures (a group of no recipients) says — and draws nothing.
function upliftChart(arms) {
  const ns = 'http://www.w3.org/2000/svg';
  const rows = [];
  for (const a of arms) {
    rows.push({ label: a.name, arm: a.name, variant: '', c: a.uplift.conversion });
    for (const v of a.treated.variants || []) rows.push({ label: `${a.name} · ${v.name}`, arm: a.name, variant: v.name, c: v.uplift.conversion });
  }
  const ok = (c) => [c.absolute, ...(c.absolute_ci95 || [])].every((x) => x != null && Number.isFinite(x)) && (c.absolute_ci95 || []).length === 2;
  let m = 0;
  for (const r of rows) if (ok(r.c)) m = Math.max(m, Math.abs(r.c.absolute_ci95[0]), Math.abs(r.c.absolute_ci95[1]));
  if (m === 0) m = 0.01; // ±1 pp: intervals of no conversions are [0, 0]
  const rowH = 22, top = 8, h = top + rows.length * rowH + 18, x0 = 120, w = 180, mid = x0 + w / 2;
  const x = (v) => mid + (v / m) * (w / 2);
  const svgEl = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text != null) e.textContent = text;
    return e;
  };
  const svg = svgEl('svg', { class: 'uplift', viewBox: `0 0 320 ${h}`, role: 'img', 'aria-label': 'Conversion uplift per arm with its 95% interval' });
  svg.append(svgEl('title', {}, 'Conversion uplift (percentage points) with 95% intervals'));
  svg.append(svgEl('line', { class: 'zero', x1: mid, x2: mid, y1: top - 4, y2: h - 16 }));
  svg.append(svgEl('text', { x: x0, y: h - 4 }, pp(-m)), svgEl('text', { x: mid - 3, y: h - 4 }, '0'), svgEl('text', { x: x0 + w - 40, y: h - 4 }, pp(m)));
  rows.forEach((r, i) => {
    const y = top + i * rowH + rowH / 2;
    svg.append(svgEl('text', { x: 2, y: y + 3 }, r.label.length > 22 ? r.label.slice(0, 21) + '…' : r.label));
    if (!ok(r.c)) { svg.append(svgEl('text', { x: mid + 4, y: y + 3, class: 'none' }, '—')); return; }
    const [lo, hi] = r.c.absolute_ci95;
    const g = svgEl('g', { class: 'interval', 'data-arm': r.arm, 'data-variant': r.variant });
    g.append(svgEl('title', {}, `${r.label}: ${pp(r.c.absolute)}, 95% interval ${pp(lo)} to ${pp(hi)}`));
    g.append(svgEl('line', { x1: x(lo), x2: x(hi), y1: y, y2: y }));
    g.append(svgEl('line', { x1: x(lo), x2: x(lo), y1: y - 5, y2: y + 5 }), svgEl('line', { x1: x(hi), x2: x(hi), y1: y - 5, y2: y + 5 }));
    g.append(svgEl('circle', { cx: x(r.c.absolute), cy: y, r: 3 }));
    svg.append(g);
  });
  return svg;
}

// vsFirstText writes an arm's rates as multiples of the first arm's.
function vsFirstText(v) {
  const parts = Object.entries(v).filter(([k]) => k !== 'arm').map(([k, x]) => `${k.replace(/_/g, ' ')} ${x == null ? '—' : '×' + x.toFixed(2)}`);
  return `Against ${v.arm}: ${parts.join(', ')}.`;
}

function renderReport(r) {
  const live = r.state === 'live';
  $('reportTitle').textContent = `${r.name} (campaign ${r.id})`;
  $('reportState').textContent = `${live ? 'Live: the conversion window ends ' + r.window_end + '; refreshed every ' + refreshMs / 1000 + ' s' : 'Final: the window ended ' + r.window_end}. Read ${new Date().toISOString()}.`;
  const out = [el('p', { class: 'note', id: 'reportEngagement' }, r.engagement)];
  for (const a of r.arms) {
    const src = a.segment != null ? `segment ${a.segment}` : `list ${a.list}`;
    const au = a.audience || {};
    const sec = el('section', { class: 'arm', 'data-arm': a.name },
      el('h4', {}, `Arm ${a.name} — ${src}`),
      el('p', { class: 'note' }, `${au.members} members, ${au.no_email} without an email, ${au.in_earlier_arm} already in an earlier arm; holdout ${r.holdout}%.`),
      armTable(a),
      el('p', { class: 'uplift' }, upliftText(a.uplift, live)));
    for (const v of a.treated.variants || []) sec.append(el('p', { class: 'uplift', 'data-variant': v.name }, `${v.name}: ${upliftText(v.uplift, live)}`));
    if (a.vs_first) sec.append(el('p', { class: 'vsfirst' }, vsFirstText(a.vs_first)));
    out.push(sec);
  }
  out.push(el('h4', {}, 'Conversion uplift, 95% intervals'), upliftChart(r.arms), el('p', { class: 'note' }, r.method));
  $('reportBody').replaceChildren(...out);
}

// showReport reads and draws a campaign's report, and reads it again
// while it is live and still shown.
async function showReport(id) {
  stopRefresh();
  const read = reportReads;
  const r = await api('GET', camp(id) + '/report');
  // A later read (another campaign chosen, the page left or reopened) wins.
  if (read !== reportReads || $('campaigns').hidden || shownCampaign !== id) return;
  renderReport(r);
  $('report').hidden = false;
  if (r.state === 'live') refreshTimer = setTimeout(() => guard(() => showReport(id)), refreshMs);
}

function selectCampaign(id) {
  shownCampaign = id;
  for (const tr of $('campRows').children) tr.setAttribute('aria-current', String(tr.dataset.campaign === id));
  return guard(() => showReport(id));
}

// downloadCSV fetches the report as CSV with the token in the header (a
// link to the API would need it in the URL) and saves it from a Blob.
async function downloadCSV() {
  const id = shownCampaign;
  const text = await apiText('GET', camp(id) + '/report?format=csv');
  const url = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
  const a = el('a', { href: url, download: `campaign-${site()}-${id}-report.csv` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function loadCampaigns() {
  $('campSite').textContent = '— site ' + site();
  const list = await api('GET', camp());
  const cs = list.campaigns.sort((a, b) => (a.sent < b.sent ? 1 : a.sent > b.sent ? -1 : 0));
  const now = Date.now();
  const rows = $('campRows');
  rows.replaceChildren();
  for (const c of cs) {
    const tr = el('tr', { 'data-campaign': c.id },
      el('th', { scope: 'row' }, el('button', { type: 'button', class: 'open', title: 'Show the report of ' + c.name }, c.name)),
      el('td', { class: 'num' }, c.id),
      el('td', {}, c.sent),
      el('td', {}, c.window_end),
      el('td', { class: 'state' }, Date.parse(c.window_end) > now ? 'live' : 'final'),
      el('td', { class: 'num recipients' }, c.recipients));
    tr.querySelector('button.open').addEventListener('click', () => selectCampaign(c.id));
    rows.append(tr);
  }
  $('campEmpty').hidden = cs.length > 0;
  $('campList').hidden = cs.length === 0;
  $('campCurl').textContent = `curl -H "Authorization: Bearer $TOKEN" -X POST ${location.origin}${camp()} --data-binary \\\n  '{"name":"promo","arms":[{"name":"mums","segment":"${site() === 'demo' ? 'mums-0-3-nutrilon-merries-philips' : 'SEGMENT'}"}],"holdout":10,"window":"7d"}'`;
  loadAudiences().catch((e) => { $('campError').textContent = e.message; }); // the form's choices; the list stands without them
  if (!cs.length) { $('report').hidden = true; shownCampaign = ''; return; }
  // The campaign shown stays selected when the page is opened again; else the newest.
  await selectCampaign(cs.some((c) => c.id === shownCampaign) ? shownCampaign : cs[0].id);
}

// --- New campaign form ---

let armRows = 0;
let audiences = []; // [{kind: 'segment'|'list', name}] of the site, read with the page

// loadAudiences reads the site's segments and lists, the arms' choices.
async function loadAudiences() {
  const s = encodeURIComponent(site());
  const [segs, lists] = await Promise.all([api('GET', seg()), api('GET', `/v1/lists/${s}`)]);
  audiences = [...segs.segments.map((x) => ({ kind: 'segment', name: x.name })), ...lists.lists.map((x) => ({ kind: 'list', name: x.name }))];
  audiences.sort((a, b) => (a.kind !== b.kind ? (a.kind < b.kind ? 1 : -1) : a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const sel of $('campArms').querySelectorAll('select')) fillAudiences(sel);
  if (!$('campArms').querySelector('.armrow')) addArm();
}

function fillAudiences(sel) {
  const was = sel.value;
  const groups = { segment: el('optgroup', { label: 'Segments' }), list: el('optgroup', { label: 'Lists' }) };
  for (const a of audiences) groups[a.kind].append(el('option', { value: a.kind + ':' + a.name }, a.name));
  sel.replaceChildren(...Object.values(groups).filter((g) => g.children.length));
  if (was) sel.value = was;
}

// addArm adds a row of the form: the arm's name, audience and variants.
function addArm() {
  const n = ++armRows;
  const row = el('div', { class: 'armrow', 'data-arm-row': String(n) },
    el('div', {}, el('label', { for: `arm${n}Name` }, 'Arm name'), el('input', { id: `arm${n}Name`, class: 'armName', required: '' })),
    el('div', {}, el('label', { for: `arm${n}Audience` }, 'Audience'), el('select', { id: `arm${n}Audience`, class: 'armAudience', required: '' })),
    el('div', {}, el('label', { for: `arm${n}Variants` }, 'Variants (optional)'), el('input', { id: `arm${n}Variants`, class: 'armVariants', placeholder: 'subject A, subject B' })),
    el('div', {}, el('button', { type: 'button', class: 'secondary removeArm' }, 'Remove')));
  fillAudiences(row.querySelector('select'));
  row.querySelector('.removeArm').addEventListener('click', () => {
    if ($('campArms').querySelectorAll('.armrow').length > 1) row.remove();
  });
  $('campArms').append(row);
  return row;
}

// createCampaign posts the form's campaign; the API's 400 (a bad window,
// an arm's unknown audience) is shown under the form as sent.
async function createCampaign() {
  $('campError').textContent = '';
  const arms = [...$('campArms').querySelectorAll('.armrow')].map((r) => {
    const [kind, ...name] = r.querySelector('.armAudience').value.split(':');
    const arm = { name: r.querySelector('.armName').value.trim(), [kind]: name.join(':') };
    const variants = r.querySelector('.armVariants').value.split(',').map((v) => v.trim()).filter(Boolean);
    if (variants.length) arm.variants = variants;
    return arm;
  });
  const spec = { name: $('campName').value.trim(), arms, holdout: Number($('campHoldout').value), window: $('campWindow').value.trim() };
  let c;
  try {
    c = await api('POST', camp(), JSON.stringify(spec));
  } catch (e) {
    if (e.status === 400 || e.status === 409) { $('campError').textContent = e.message; return; }
    throw e;
  }
  $('campForm').reset();
  for (const r of [...$('campArms').querySelectorAll('.armrow')].slice(1)) r.remove();
  $('newCampaign').open = false;
  shownCampaign = c.id;
  await loadCampaigns();
  $('reportTitle').focus();
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
$('reportCSV').addEventListener('click', () => guard(downloadCSV));
$('addArm').addEventListener('click', () => addArm().querySelector('input').focus());
$('campForm').addEventListener('submit', (ev) => { ev.preventDefault(); guard(createCampaign); });
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
