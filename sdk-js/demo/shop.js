// The demo shop: a static catalog, a cart in localStorage, the affinity
// calls a real shop would make, and the live panel of the visitor's profile.
'use strict'

const PRODUCTS = [
  { id: 'nutrilon-1', name: 'Nutrilon Premium 1 infant milk 800 g', brand: 'Nutrilon', category: 'baby/food/formula', age: '0-1', price: 24.99, pic: '🍼' },
  { id: 'nutrilon-2', name: 'Nutrilon Premium 2 follow-on milk 800 g', brand: 'Nutrilon', category: 'baby/food/formula', age: '0-1', price: 23.49, pic: '🍼' },
  { id: 'nutrilon-porridge', name: 'Nutrilon rice porridge 4 m+', brand: 'Nutrilon', category: 'baby/food/cereal', age: '0-1', price: 4.99, pic: '🥣' },
  { id: 'nutrilon-3', name: 'Nutrilon Junior 3 growing-up milk', brand: 'Nutrilon', category: 'baby/food/formula', age: '1-3', price: 19.99, pic: '🥛' },
  { id: 'merries-nb', name: 'Merries diapers newborn, 90 pcs', brand: 'Merries', category: 'baby/diapers', age: '0-1', price: 17.9, pic: '🧷' },
  { id: 'merries-l', name: 'Merries pants L 9-14 kg, 44 pcs', brand: 'Merries', category: 'baby/diapers', age: '1-3', price: 21.5, pic: '🧷' },
  { id: 'philips-bottle', name: 'Philips Avent Natural bottle 260 ml', brand: 'Philips', category: 'baby/feeding/bottles', age: '0-1', price: 12.99, pic: '🍼' },
  { id: 'philips-steriliser', name: 'Philips Avent steam steriliser', brand: 'Philips', category: 'baby/feeding/sterilisers', age: '0-1', price: 69.99, pic: '♨️' },
  { id: 'philips-monitor', name: 'Philips Avent video baby monitor', brand: 'Philips', category: 'baby/safety/monitors', age: '1-3', price: 149, pic: '📹' },
  { id: 'hipp-pouch', name: 'HiPP organic apple-pear pouch', brand: 'HiPP', category: 'baby/food/puree', age: '1-3', price: 1.49, pic: '🍐' },
  { id: 'chicco-bike', name: 'Chicco balance bike', brand: 'Chicco', category: 'toys/outdoor', age: '3-6', price: 59.9, pic: '🚲' },
  { id: 'lego-duplo', name: 'LEGO DUPLO number train', brand: 'LEGO', category: 'toys/construction', age: '1-3', price: 29.99, pic: '🚂' },
  { id: 'lego-classic', name: 'LEGO Classic bricks box', brand: 'LEGO', category: 'toys/construction', age: '3-6', price: 34.99, pic: '🧱' },
]

const $ = s => document.querySelector(s)
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag)
  for (const k in attrs || {}) k.startsWith('on') ? e.addEventListener(k.slice(2), attrs[k]) : e.setAttribute(k, attrs[k])
  for (const k of kids) e.append(k)
  return e
}
const money = n => '€' + n.toFixed(2)
// What the snippet is told about a product: the contract's fields only.
const tracked = p => ({ id: p.id, brand: p.brand, category: p.category, age: p.age, price: p.price })
const byId = id => PRODUCTS.find(p => p.id === id)

const cart = {
  get: () => { try { return JSON.parse(localStorage.getItem('demo_cart')) || [] } catch (e) { return [] } },
  set: c => { localStorage.setItem('demo_cart', JSON.stringify(c)); cartLink() },
}
const cartLink = () => { $('#cart-link').textContent = 'Cart (' + cart.get().reduce((n, i) => n + i.qty, 0) + ')' }

function card (p) {
  return el('a', { class: 'card', href: 'product.html?id=' + p.id, 'data-id': p.id },
    el('div', { class: 'pic' }, p.pic), el('div', { class: 'brand' }, p.brand), el('div', {}, p.name),
    el('span', { class: 'tag' }, 'age ' + p.age), el('span', { class: 'tag' }, p.category.split('/').pop()),
    el('div', { class: 'price' }, money(p.price)))
}

// The index filters by brand and age with history.pushState: every filter
// is a SPA route change, which the snippet reports as a pageview.
function index () {
  const render = () => {
    const q = new URLSearchParams(location.search), brand = q.get('brand'), age = q.get('age')
    const f = $('#filters')
    f.textContent = ''
    const link = (label, k, v) => {
      const next = new URLSearchParams(location.search)
      v ? next.set(k, v) : next.delete(k)
      const on = (q.get(k) || '') === (v || '')
      f.append(el('a', { href: '?' + next, class: on ? 'on' : '', onclick: e => { e.preventDefault(); history.pushState(null, '', '?' + next); render() } }, label))
    }
    link('all brands', 'brand', '')
    for (const b of [...new Set(PRODUCTS.map(p => p.brand))]) link(b, 'brand', b)
    f.append(el('br'))
    link('all ages', 'age', '')
    for (const a of ['0-1', '1-3', '3-6']) link('age ' + a, 'age', a)
    $('#grid').replaceChildren(...PRODUCTS.filter(p => (!brand || p.brand === brand) && (!age || p.age === age)).map(card))
  }
  addEventListener('popstate', render)
  render()
}

function product () {
  const p = byId(new URLSearchParams(location.search).get('id'))
  if (!p) { $('#product').textContent = 'No such product.'; return }
  document.title = p.name + ' — Little Ones'
  affinity('view', tracked(p))
  const add = () => {
    const c = cart.get(), i = c.find(i => i.id === p.id)
    i ? i.qty++ : c.push({ id: p.id, qty: 1 })
    cart.set(c)
    affinity('cart', tracked(p))
    $('#added').textContent = 'Added to your cart.'
  }
  const same = PRODUCTS.filter(o => o !== p && (o.brand === p.brand || o.age === p.age)).slice(0, 4)
  $('#product').replaceChildren(
    el('div', { class: 'pic' }, p.pic), el('div', { class: 'brand' }, p.brand), el('h1', {}, p.name),
    el('span', { class: 'tag' }, 'age ' + p.age), el('span', { class: 'tag' }, p.category),
    el('p', { class: 'price' }, money(p.price)),
    el('button', { id: 'add', onclick: add }, 'Add to cart'), ' ', el('span', { id: 'added', class: 'muted' }),
    el('h3', {}, 'You may also like'), el('div', { class: 'grid' }, ...same.map(card)))
}

function cartPage () {
  const c = cart.get()
  if (!c.length) { $('#cart').replaceChildren(el('p', {}, 'Your cart is empty. ', el('a', { href: './' }, 'Shop on.'))); return }
  const rows = c.map(i => {
    const p = byId(i.id)
    const remove = () => {
      cart.set(cart.get().filter(x => x.id !== i.id))
      affinity('uncart', Object.assign(tracked(p), { qty: i.qty }))
      cartPage()
    }
    return el('tr', {}, el('td', {}, p.name), el('td', {}, '× ' + i.qty), el('td', {}, money(p.price * i.qty)),
      el('td', {}, el('button', { class: 'link', onclick: remove }, 'remove')))
  })
  $('#cart').replaceChildren(el('table', {}, ...rows), el('p', {}, el('a', { href: 'checkout.html' }, 'Go to checkout →')))
}

function checkout () {
  const c = cart.get(), total = c.reduce((s, i) => s + byId(i.id).price * i.qty, 0)
  const email = el('input', { type: 'email', id: 'email', placeholder: 'you@example.com', required: '' })
  const birthday = el('input', { type: 'date', id: 'birthday' })
  // identify as soon as the visitor gives an email, not only at the order;
  // once per distinct (email, birthday).
  let said = ''
  const identify = () => {
    if (!email.checkValidity() || !email.value || said === email.value + birthday.value) return
    said = email.value + birthday.value
    const traits = birthday.value ? { child_birthday: birthday.value } : {}
    affinity('identify', email.value, traits)
    $('#identified').textContent = 'Thanks, we will remember you as ' + email.value + '.'
  }
  email.addEventListener('change', identify)
  birthday.addEventListener('change', identify)
  const order = e => {
    e.preventDefault()
    if (!c.length) return
    identify()
    const id = 'demo-' + Date.now().toString(36)
    affinity('purchase', { order_id: id, total: Math.round(total * 100) / 100, items: c.map(i => Object.assign(tracked(byId(i.id)), { qty: i.qty })) })
    cart.set([])
    $('#checkout').replaceChildren(el('h2', {}, 'Thank you!'), el('p', {}, 'Order ' + id + ', ' + money(total) + '.'), el('a', { href: './' }, 'Back to the shop'))
  }
  $('#checkout').replaceChildren(el('form', { onsubmit: order },
    el('p', {}, c.length ? c.length + ' product(s), ' + money(total) : 'Your cart is empty.'),
    el('label', {}, 'Email ', email), el('label', {}, "Child's birthday (optional) ", birthday),
    el('p', { id: 'identified', class: 'muted' }),
    el('button', { id: 'order', type: 'submit' }, 'Place order')))
}

// ---- the live panel -------------------------------------------------------

const visitorId = () => (document.cookie.match(/(?:^|; )_aff_v=([\da-f-]{36})/) || [])[1]

// dims finds the profile's per-dimension scores whatever the exact shape of
// the API's JSON: under "interests", "dimensions" or "scores", or at the top,
// each dimension a list of {value, score, share} or a {value: score} map.
function dims (profile) {
  const out = {}
  const roots = [profile.interests, profile.dimensions, profile.scores, profile].filter(r => r && typeof r === 'object')
  for (const d of ['brand', 'category', 'age', 'price', 'product']) {
    for (const r of roots) {
      let v = r[d]
      if (!v || typeof v !== 'object') continue
      if (!Array.isArray(v)) v = Object.entries(v).map(([value, s]) => typeof s === 'number' ? { value, score: s } : Object.assign({ value }, s))
      v = v.filter(x => x && x.value != null).map(x => ({ value: String(x.value), score: +(x.score != null ? x.score : x.s) || 0, share: x.share }))
      if (!v.length) continue
      v.sort((a, b) => b.score - a.score)
      const sum = v.reduce((s, x) => s + Math.max(x.score, 0), 0)
      for (const x of v) if (x.share == null) x.share = sum > 0 ? Math.max(x.score, 0) / sum : 0
      out[d] = v
      break
    }
  }
  return out
}

function segmentNames (s) {
  if (!s) return []
  const list = Array.isArray(s) ? s : s.segments || s.memberships || Object.keys(s)
  return list.map(x => typeof x === 'string' ? x : x.name || x.segment || JSON.stringify(x))
}

function renderPanel (data, err) {
  const panel = $('#panel'), v = visitorId()
  const kids = [el('h2', {}, 'What affinity knows about you'), el('div', { class: 'muted' }, 'visitor ' + (v || '— (no id yet)'))]
  if (err) kids.push(el('p', { class: 'muted' }, err))
  const p = data && data.profile
  if (data && data.pending) kids.push(el('p', { class: 'muted', id: 'pending' }, 'Live profile not available: ' + data.errors.join('; ')))
  else if (data && data.errors.length && !p) kids.push(el('p', { class: 'muted' }, data.errors.join('; ')))
  if (p) {
    if (p.email) kids.push(el('div', {}, 'identified as ', el('b', {}, p.email)))
    const ds = dims(p)
    for (const d in ds) {
      const top = ds[d].slice(0, 5)
      kids.push(el('h3', {}, d), el('ol', { 'data-dim': d }, ...top.map(x =>
        el('li', { 'data-value': x.value }, el('span', {}, x.value), el('div', { class: 'bar', style: 'width:' + Math.round(100 * x.share) + '%' }), el('span', { class: 'muted' }, Math.round(100 * x.share) + '%')))))
    }
    if (ds.brand) panel.dataset.topBrand = ds.brand[0].value
    if (p.events && typeof p.events === 'object') {
      const counts = Object.entries(p.events).map(([t, c]) => t + ' ' + (c && c.count != null ? c.count : c))
      if (counts.length) kids.push(el('h3', {}, 'events'), el('div', { id: 'events' }, counts.join(' · ')))
    }
    if (p.orders && p.orders.count) kids.push(el('div', {}, p.orders.count + ' order(s), ' + money(+p.orders.revenue || 0)))
    const segs = segmentNames(data.segments)
    const segErr = data.segments == null && data.errors.find(e => e.startsWith('segments'))
    kids.push(el('h3', {}, 'segments'), segs.length ? el('div', { id: 'segments' }, ...segs.map(s => el('span', { class: 'seg' }, s)))
      : el('div', { class: 'muted', title: segErr || '' }, segErr ? 'not available in this build' : 'none yet'))
    kids.push(el('details', {}, el('summary', { class: 'muted' }, 'raw profile JSON'), el('pre', {}, JSON.stringify(p, null, 1))))
  } else if (data && !data.pending) kids.push(el('p', { class: 'muted' }, 'No profile yet: look at a few products.'))
  panel.replaceChildren(...kids)
}

async function poll () {
  const v = visitorId()
  if (v) {
    try {
      const r = await fetch('api/visitor?v=' + v, { credentials: 'same-origin' })
      r.ok ? renderPanel(await r.json()) : renderPanel(null, 'panel: ' + r.status + ' ' + (await r.text()))
    } catch (e) { renderPanel(null, 'panel: ' + e.message) }
  } else renderPanel(null)
  setTimeout(poll, document.hidden ? 5000 : 1500)
}

cartLink()
;({ index, product, cart: cartPage, checkout })[document.body.dataset.page]()
poll()
