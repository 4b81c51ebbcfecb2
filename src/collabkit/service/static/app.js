// The collabkit page: plain JavaScript over the service's JSON API (relative URLs, so it also works
// behind a reverse proxy under a sub-path). No framework, no build step, nothing from a CDN.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    headers: { Accept: "application/json", ...(options.body ? { "Content-Type": "application/json" } : {}) },
    credentials: "same-origin",
    ...options,
  });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : `${response.status} ${response.statusText}`;
    const error = new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    error.status = response.status;
    error.body = body;
    throw error;
  }
  return body;
}

function showError(error) {
  const box = $("error");
  if (!error) {
    box.hidden = true;
    return;
  }
  box.textContent = error.status === 401 ? "The session has ended (it lasts 12 hours, or until the service restarts): reload the page to log in again." : error.message;
  box.hidden = false;
}

function debounce(fn, ms) {
  let timer = 0;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

const fmt = (x, digits = 2) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
const signed = (x, digits = 2) => (x >= 0 ? "+" : "−") + Math.abs(x).toFixed(digits);
const plural = (n, word) => `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;
let minCount = 1; // neighbours with fewer ratings are mostly noise; set from the server's /biases default
let capabilities = {}; // what the model's family can answer (GET /health); the page asks only for that
let modelName = "this";
const can = (what) => capabilities[what] === true;
const lacks = {
  item_vectors: "has no item vectors to compare",
  biases: "has no item biases",
  fold_in: "cannot fold in a new user",
};
const cannot = (what) => `The ${modelName} model ${lacks[what] || `lacks ${what}`}.`;

// -- the model line, settings, training curve ------------------------------------------------

async function loadModel() {
  const [health, info] = await Promise.all([api("health"), api("model")]);
  capabilities = health.capabilities || {};
  modelName = info.model;
  const data = info.data ? ` trained on ${String(info.data.name).split(/[\\/]/).pop()}` : "";
  $("model-line").textContent =
    `${info.model} model${data}: ${plural(health.n_items, "item")}, ${plural(health.n_users, "user")}`;
  document.title = `collabkit: ${info.model} model`;
  renderSettings(info);
  renderHistory(info.history || []);
}

function addPairs(list, pairs) {
  list.replaceChildren();
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === "") continue;
    list.append(el("dt", { text: k }), el("dd", { text: typeof v === "object" ? JSON.stringify(v) : String(v) }));
  }
}

const shown = (v) => (typeof v !== "number" ? v : Number.isInteger(v) ? v.toLocaleString() : fmt(v, 4));

function renderSettings(info) {
  const r = info.results || {};
  const s = r.settings || {};
  const family = Object.entries(info.settings || {}).map(([k, v]) => [k.replace(/_/g, " "), Array.isArray(v) && v.length === 2 && k.endsWith("range") ? v.join(" to ") : v]);
  const trained = can("lr_find") ? [ // a gradient fit's recipe; a closed-form fit has none
    ["recipe", r.recipe],
    ["epochs", s.epochs],
    ["batch size", s.bs],
    ["learning rate", s.lr],
    ["weight decay", s.wd],
  ] : [];
  addPairs($("settings-list"), [
    ["model", info.model],
    ["scores", info.score_kind === "rating" ? "predicted ratings" : "ranking scores (not stars)"],
    ...family,
    ...trained,
    ["seed", s.seed],
    ["data", info.data ? `${info.data.name} (${Number(info.data.n_rows).toLocaleString()} rows)` : null],
  ]);
  const figures = [];
  const valid = r.valid || r.test || {};
  for (const [k, v] of Object.entries(valid)) if (v !== null && v !== undefined) figures.push([`held-out ${k}`, shown(v)]);
  if (r.n_train) figures.push(["training rows", Number(r.n_train).toLocaleString()]);
  if (r.n_valid) figures.push(["held-out rows", Number(r.n_valid).toLocaleString()]);
  if (r.fit_seconds) figures.push(["fit time", `${fmt(r.fit_seconds, 1)} s`]);
  if (!figures.length) figures.push(["test figures", "none saved with this model"]);
  addPairs($("figures-list"), figures);
}

function renderHistory(history) {
  const box = $("curve");
  const tableBox = $("history-table");
  if (!history.length) {
    box.replaceChildren(el("p", { class: "muted", text: "This model keeps no epoch history." }));
    return;
  }
  const series = ["train_loss", "valid_loss"].filter((k) => history.some((h) => typeof h[k] === "number"));
  const colours = { train_loss: "#1f6fb4", valid_loss: "#d9622b" };
  const W = 520, H = 220, L = 46, R = 12, T = 12, B = 30;
  const values = history.flatMap((h) => series.map((k) => h[k]).filter((v) => typeof v === "number"));
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
  const pad = (hi - lo) * 0.08;
  lo -= pad; hi += pad;
  const n = history.length;
  const x = (i) => L + (n === 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (n - 1));
  const y = (v) => T + ((hi - v) * (H - T - B)) / (hi - lo);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Loss per epoch over ${n} epochs`);
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  for (let t = 0; t <= 4; t++) {
    const v = lo + ((hi - lo) * t) / 4;
    add("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "currentColor", "stroke-opacity": 0.12 });
    add("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, v.toFixed(3));
  }
  history.forEach((h, i) => add("text", { x: x(i), y: H - 10, "text-anchor": "middle" }, String(h.epoch ?? i)));
  for (const k of series) {
    const pts = history.map((h, i) => (typeof h[k] === "number" ? `${x(i)},${y(h[k])}` : null)).filter(Boolean);
    add("polyline", { points: pts.join(" "), fill: "none", stroke: colours[k], "stroke-width": 2.5 });
    history.forEach((h, i) => {
      if (typeof h[k] === "number") add("circle", { cx: x(i), cy: y(h[k]), r: 3.5, fill: colours[k] }).append(
        Object.assign(document.createElementNS(ns, "title"), { textContent: `epoch ${h.epoch ?? i}: ${k} ${fmt(h[k], 4)}` }));
    });
  }
  series.forEach((k, j) => {
    add("rect", { x: L + 10 + j * 110, y: T + 2, width: 12, height: 4, fill: colours[k] });
    add("text", { x: L + 26 + j * 110, y: T + 8 }, k.replace("_", " "));
  });
  box.replaceChildren(svg);
  const cols = Object.keys(history[0]).filter((k) => k !== "time");
  const table = el("table", {}, el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", { class: c === "epoch" ? "" : "num", text: c.replace("_", " ") })))));
  const body = el("tbody");
  for (const h of history) body.append(el("tr", {}, ...cols.map((c) => el("td", { class: c === "epoch" ? "" : "num", text: typeof h[c] === "number" && c !== "epoch" ? fmt(h[c], 4) : String(h[c]) }))));
  table.append(body);
  tableBox.replaceChildren(table);
}

// -- biases ------------------------------------------------------------------------------------

async function loadBiases() {
  if (!can("biases")) {
    $("biases-note").textContent = `${cannot("biases")} Train a dotbias model to see the items liked beyond anyone's taste.`;
    $("biases").querySelector(".two").hidden = true;
    return;
  }
  try {
    const b = await api("biases?n=8");
    minCount = b.min_count;
    $("biases-note").textContent =
      `An item's bias is what the model adds to its rating whatever a user's tastes (items with at least ${b.min_count} ratings).`;
    const row = (r) => el("li", {}, el("button", { class: "linkish", type: "button", text: r.title, onclick: () => showNeighbours(r.item) }),
      " ", el("span", { class: "score", text: `${signed(r.bias)} · ${plural(r.n_ratings, "rating")}` }));
    $("bias-high").replaceChildren(...b.highest.map(row));
    $("bias-low").replaceChildren(...b.lowest.map(row));
  } catch (error) {
    $("biases-note").textContent = error.message;
  }
}

// -- find a movie, neighbours ------------------------------------------------------------------

async function searchInto(q, list, render) {
  const ticket = String(Number(list.dataset.ticket || 0) + 1); // only the latest search may fill the list
  list.dataset.ticket = ticket;
  const result = await api(`items?q=${encodeURIComponent(q)}&limit=8`);
  if (list.dataset.ticket !== ticket) return;
  list.replaceChildren(...result.items.map(render));
  if (!result.items.length) list.append(el("li", { class: "muted", text: `No title contains “${q}”.` }));
}

function findRow(item) {
  return el("li", {}, el("button", { class: "pick", type: "button", onclick: () => showNeighbours(item.item) },
    el("span", { text: item.title }), el("span", { class: "count", text: plural(item.n_ratings, "rating") })));
}

let neighbourRequest = 0;

async function showNeighbours(itemId) {
  const ticket = ++neighbourRequest;
  const box = $("neighbours");
  if (!can("item_vectors")) {
    box.replaceChildren(el("p", { class: "muted", text: `${cannot("item_vectors")} It has no neighbours to show.` }));
    return;
  }
  try {
    const res = await api(`similar?item=${encodeURIComponent(itemId)}&n=10&min_count=${minCount}`);
    if (ticket !== neighbourRequest) return;
    const rows = res.similar_items.map((s) => el("tr", {},
      el("td", {}, el("button", { class: "linkish", type: "button", text: s.title, onclick: () => showNeighbours(s.item) })),
      el("td", { class: "num" }, el("span", { class: "bar", style: `width:${Math.max(2, Math.round(Math.max(0, s.score) * 60))}px` }), fmt(s.score, 3)),
      el("td", { class: "num", text: s.n_ratings.toLocaleString() })));
    box.replaceChildren(
      el("h3", { id: "neighbours-h", text: `Nearest to ${res.title}` }),
      el("p", { class: "muted", text: `${plural(res.n_ratings, "rating")} in training.` }),
      el("table", { id: "neighbours-table", "aria-labelledby": "neighbours-h" },
        el("thead", {}, el("tr", {}, el("th", { text: "title" }), el("th", { class: "num", text: "similarity" }), el("th", { class: "num", text: "ratings" }))),
        el("tbody", {}, ...rows)));
    map.highlight(res.item, res.similar_items.map((s) => s.item));
    showError(null);
  } catch (error) {
    box.replaceChildren(el("p", { class: "error", text: error.message }));
  }
}

// -- rate a few movies -------------------------------------------------------------------------

const ratings = new Map(); // item id (as text) -> { title, rating }
let recRequest = 0;

function stars(item) {
  const current = ratings.get(String(item.item));
  const group = el("span", { class: "stars", role: "group", "aria-label": `Rate ${item.title}` });
  for (let s = 1; s <= 5; s++) {
    group.append(el("button", {
      type: "button", class: current && current.rating >= s ? "on" : "", text: "★",
      "aria-label": `${s} star${s > 1 ? "s" : ""} for ${item.title}`, "aria-pressed": current && current.rating === s ? "true" : "false",
      "data-stars": String(s),
      onclick: () => rate(item, s),
    }));
  }
  return group;
}

function rateRow(item) {
  return el("li", { "data-item": String(item.item) }, el("span", { class: "title" }, item.title, " ", el("span", { class: "count", text: `(${plural(item.n_ratings, "rating")})` })), stars(item));
}

function rate(item, value) {
  ratings.set(String(item.item), { title: item.title, rating: value, n_ratings: item.n_ratings });
  refreshRatings();
}

function refreshRatings() {
  const list = $("rated");
  list.replaceChildren();
  if (!ratings.size) list.append(el("li", { class: "muted", text: "None yet." }));
  for (const [id, r] of ratings) {
    list.append(el("li", { class: "chip" }, `${r.title} `, el("span", { class: "score", text: "★".repeat(r.rating) }),
      el("button", { type: "button", "aria-label": `Remove ${r.title}`, text: "×", onclick: () => { ratings.delete(id); refreshRatings(); } })));
  }
  for (const li of $("rate-results").querySelectorAll("li[data-item]")) {
    const r = ratings.get(li.dataset.item);
    for (const b of li.querySelectorAll("button[data-stars]")) {
      const s = Number(b.dataset.stars);
      b.classList.toggle("on", Boolean(r && r.rating >= s));
      b.setAttribute("aria-pressed", r && r.rating === s ? "true" : "false");
    }
  }
  updateRecommendations();
}

async function updateRecommendations() {
  if (!can("fold_in")) {
    $("recs").replaceChildren(el("li", { class: "muted", text: cannot("fold_in") }));
    return;
  }
  const ticket = ++recRequest;
  const body = { ratings: Object.fromEntries([...ratings].map(([id, r]) => [id, r.rating])), n: 10 };
  const list = $("recs");
  list.setAttribute("aria-busy", "true");
  try {
    const res = await api("recommend", { method: "POST", body: JSON.stringify(body) });
    if (ticket !== recRequest) return;
    $("recs-h").textContent = ratings.size ? `Recommended for you (${plural(ratings.size, "rating")})` : "Popular with everyone";
    list.replaceChildren(...res.recommendations.map((r) => {
      const parts = [];
      if (r.why.bias !== null) parts.push(`bias ${signed(r.why.bias)}`);
      if (r.why.closest.length && ratings.size) {
        parts.push("closest to " + r.why.closest.map((c) => `${c.title} (you ${"★".repeat(Math.round(c.your_rating))}, ${fmt(c.similarity)})`).join(", "));
      }
      return el("li", { "data-item": String(r.item) },
        el("button", { class: "linkish", type: "button", text: r.title, onclick: () => showNeighbours(r.item) }), " ",
        el("span", { class: "score", text: res.score_kind === "rating" ? `${fmt(r.rating, 1)} ★ predicted` : `score ${Number.isInteger(r.rating) ? r.rating.toLocaleString() : fmt(r.rating, 3)}` }),
        el("span", { class: "why", text: parts.join(" · ") }));
    }));
    if (res.ignored.length) list.append(el("li", { class: "muted", text: `${plural(res.ignored.length, "rated item")} left out: no training ratings.` }));
    showError(null);
  } catch (error) {
    if (ticket === recRequest) showError(error);
  } finally {
    if (ticket === recRequest) list.removeAttribute("aria-busy");
  }
}

// -- the embedding map -------------------------------------------------------------------------

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#ad494a"];

const map = {
  points: [],
  genres: [],
  view: { scale: 1, tx: 0, ty: 0 },
  base: { scale: 1, cx: 0, cy: 0 },
  hover: -1,
  focus: -1,
  selected: null,
  neighbours: new Set(),
  colourBy: "first",

  async load() {
    if (!can("item_vectors")) {
      $("map-note").textContent = `No map: ${cannot("item_vectors")}`;
      for (const id of ["map-wrap", "map-legend"]) $(id).hidden = true;
      $("map-section").querySelector(".map-tools").hidden = true;
      return;
    }
    try {
      const data = await api("map");
      this.points = data.points;
      this.genres = data.genres;
      const a = data.axes;
      $("axis-x").textContent = a[0] ? `PC1 (${fmt(a[0].variance_share * 100, 0)}%): ${a[0].low_end[0]} ← → ${a[0].high_end[0]}` : "";
      $("axis-y").textContent = a[1] ? `PC2 (${fmt(a[1].variance_share * 100, 0)}%): up → ${a[1].high_end[0]}` : "";
      const select = $("map-colour");
      const options = [["first", this.genres.length ? "first genre" : "one colour"], ["count", "number of ratings"]];
      for (const g of this.genres) options.push([`genre:${g}`, `only ${g}`]);
      select.replaceChildren(...options.map(([v, t]) => el("option", { value: v, text: t })));
      select.addEventListener("change", () => { this.colourBy = select.value; this.legend(); this.draw(); });
      this.fit();
      this.legend();
      this.draw();
    } catch (error) {
      $("map-note").textContent = `No map: ${error.message}`;
    }
  },

  canvas() { return $("map"); },

  fit() {
    const c = this.canvas();
    const w = c.clientWidth, h = c.clientHeight;
    if (!this.points.length || !w || !h) return;
    const xs = this.points.map((p) => p.x), ys = this.points.map((p) => p.y);
    const minX = Math.min(...xs), maxX = Math.max(...xs), minY = Math.min(...ys), maxY = Math.max(...ys);
    const spanX = Math.max(maxX - minX, 1e-9), spanY = Math.max(maxY - minY, 1e-9);
    this.base = { scale: Math.min((w - 40) / spanX, (h - 50) / spanY), cx: (minX + maxX) / 2, cy: (minY + maxY) / 2 };
    this.view = { scale: 1, tx: 0, ty: 0 };
  },

  toScreen(i) {
    const p = this.points[i];
    const c = this.canvas();
    const s = this.base.scale * this.view.scale;
    return { x: c.clientWidth / 2 + (p.x - this.base.cx) * s + this.view.tx, y: c.clientHeight / 2 - (p.y - this.base.cy) * s + this.view.ty };
  },

  radius(p) {
    const most = this.points.length ? this.points[0].n_ratings : 1;
    return 2.5 + 5 * Math.sqrt(p.n_ratings / Math.max(1, most));
  },

  colour(p) {
    if (this.colourBy === "count") {
      const most = this.points.length ? this.points[0].n_ratings : 1;
      const t = Math.sqrt(p.n_ratings / Math.max(1, most));
      return `hsl(${210 - 190 * t}, 70%, ${55 - 15 * t}%)`;
    }
    if (this.colourBy.startsWith("genre:")) return p.genres.includes(this.colourBy.slice(6)) ? "#d62728" : "rgba(128,128,128,0.35)";
    if (!p.genres.length) return "#1f6fb4";
    const k = this.genres.indexOf(p.genres[0]);
    return k >= 0 && k < PALETTE.length - 1 ? PALETTE[k] : PALETTE[PALETTE.length - 1];
  },

  legend() {
    const box = $("map-legend");
    box.replaceChildren();
    if (this.colourBy === "count") {
      box.append(el("span", {}, "small, blue: few ratings; large, red: many"));
    } else if (this.colourBy.startsWith("genre:")) {
      box.append(el("span", {}, el("i", { style: "background:#d62728" }), this.colourBy.slice(6)), el("span", {}, el("i", { style: "background:#999" }), "other"));
    } else if (this.genres.length) {
      this.genres.slice(0, PALETTE.length - 1).forEach((g, k) => box.append(el("span", {}, el("i", { style: `background:${PALETTE[k]}` }), g)));
      if (this.genres.length >= PALETTE.length) box.append(el("span", {}, el("i", { style: `background:${PALETTE[PALETTE.length - 1]}` }), "other"));
    } else {
      box.append(el("span", { class: "muted" }, "No genres known for this model's items."));
    }
  },

  draw() {
    const c = this.canvas();
    const ratio = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (c.width !== Math.round(w * ratio) || c.height !== Math.round(h * ratio)) {
      c.width = Math.round(w * ratio);
      c.height = Math.round(h * ratio);
    }
    const g = c.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, h);
    const ink = getComputedStyle(document.body).color;
    const order = this.points.map((_, i) => i).reverse(); // the most rated drawn last, on top
    for (const i of order) {
      const p = this.points[i];
      const s = this.toScreen(i);
      if (s.x < -10 || s.y < -10 || s.x > w + 10 || s.y > h + 10) continue;
      g.beginPath();
      g.arc(s.x, s.y, this.radius(p), 0, 2 * Math.PI);
      g.fillStyle = this.colour(p);
      g.globalAlpha = this.selected === null || this.isMarked(p) || i === this.hover || i === this.focus ? 0.85 : 0.25;
      g.fill();
    }
    g.globalAlpha = 1;
    const label = (i, strong) => {
      const p = this.points[i];
      const s = this.toScreen(i);
      g.beginPath();
      g.arc(s.x, s.y, this.radius(p) + 3, 0, 2 * Math.PI);
      g.strokeStyle = strong ? "#d9622b" : ink;
      g.lineWidth = 2;
      g.stroke();
      g.font = `${strong ? "600 " : ""}12px system-ui, sans-serif`;
      g.fillStyle = ink;
      g.fillText(p.title, s.x + this.radius(p) + 5, s.y - 4);
    };
    this.points.forEach((p, i) => { if (this.isMarked(p)) label(i, String(p.item) === String(this.selected)); });
    if (this.focus >= 0) label(this.focus, true);
    if (this.hover >= 0) label(this.hover, false);
  },

  isMarked(p) {
    return this.selected !== null && (String(p.item) === String(this.selected) || this.neighbours.has(String(p.item)));
  },

  highlight(item, neighbours) {
    this.selected = item;
    this.neighbours = new Set(neighbours.map(String));
    this.draw();
  },

  nearest(x, y, within = 12) {
    let best = -1, bestD = within * within;
    this.points.forEach((p, i) => {
      const s = this.toScreen(i);
      const d = (s.x - x) ** 2 + (s.y - y) ** 2;
      if (d <= bestD) { best = i; bestD = d; }
    });
    return best;
  },

  tip(i) {
    const tip = $("map-tip");
    if (i < 0) { tip.hidden = true; return; }
    const p = this.points[i];
    const s = this.toScreen(i);
    tip.replaceChildren(el("strong", { text: p.title }), el("br"), `${plural(p.n_ratings, "rating")}${p.genres.length ? " · " + p.genres.join(", ") : ""}`);
    tip.hidden = false;
    const c = this.canvas();
    tip.style.left = `${Math.min(Math.max(4, s.x + 12), c.clientWidth - tip.offsetWidth - 4)}px`;
    tip.style.top = `${s.y + 14 + tip.offsetHeight > c.clientHeight ? s.y - tip.offsetHeight - 10 : s.y + 14}px`;
  },

  zoom(factor, x, y) {
    const c = this.canvas();
    const cx = x ?? c.clientWidth / 2, cy = y ?? c.clientHeight / 2;
    const next = Math.min(Math.max(this.view.scale * factor, 0.5), 60);
    const f = next / this.view.scale;
    this.view.tx = cx - c.clientWidth / 2 - (cx - c.clientWidth / 2 - this.view.tx) * f;
    this.view.ty = cy - c.clientHeight / 2 - (cy - c.clientHeight / 2 - this.view.ty) * f;
    this.view.scale = next;
    this.draw();
  },

  pan(dx, dy) {
    this.view.tx += dx;
    this.view.ty += dy;
    this.draw();
  },

  wire() {
    const c = this.canvas();
    let drag = null;
    c.addEventListener("pointerdown", (e) => { drag = { x: e.clientX, y: e.clientY, moved: false }; c.setPointerCapture(e.pointerId); });
    c.addEventListener("pointermove", (e) => {
      const r = c.getBoundingClientRect();
      if (drag) {
        const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
        if (drag.moved || Math.abs(dx) + Math.abs(dy) > 3) {
          drag.moved = true;
          c.classList.add("dragging");
          drag.x = e.clientX; drag.y = e.clientY;
          this.pan(dx, dy);
          this.tip(-1);
          return;
        }
      }
      const i = this.nearest(e.clientX - r.left, e.clientY - r.top);
      if (i !== this.hover) { this.hover = i; this.draw(); }
      this.tip(i);
    });
    c.addEventListener("pointerup", (e) => {
      const r = c.getBoundingClientRect();
      if (drag && !drag.moved) {
        const i = this.nearest(e.clientX - r.left, e.clientY - r.top);
        if (i >= 0) { this.focus = i; showNeighbours(this.points[i].item); }
      }
      drag = null;
      c.classList.remove("dragging");
    });
    c.addEventListener("pointerleave", () => { this.hover = -1; this.tip(-1); this.draw(); });
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = c.getBoundingClientRect();
      this.zoom(e.deltaY < 0 ? 1.2 : 1 / 1.2, e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });
    c.addEventListener("keydown", (e) => {
      const step = 40;
      const keys = {
        ArrowLeft: () => this.pan(step, 0), ArrowRight: () => this.pan(-step, 0),
        ArrowUp: () => this.pan(0, step), ArrowDown: () => this.pan(0, -step),
        "+": () => this.zoom(1.25), "=": () => this.zoom(1.25), "-": () => this.zoom(0.8), "0": () => { this.fit(); this.draw(); },
        n: () => this.step(1), p: () => this.step(-1),
        Enter: () => { if (this.focus >= 0) showNeighbours(this.points[this.focus].item); },
        Escape: () => { this.focus = -1; this.tip(-1); this.draw(); },
      };
      const act = keys[e.key];
      if (act) { e.preventDefault(); act(); }
    });
    $("zoom-in").addEventListener("click", () => this.zoom(1.4));
    $("zoom-out").addEventListener("click", () => this.zoom(1 / 1.4));
    $("zoom-reset").addEventListener("click", () => { this.fit(); this.draw(); });
    new ResizeObserver(() => { const keep = this.view; this.fit(); this.view = keep; this.draw(); }).observe($("map-wrap"));
  },

  step(delta) {
    if (!this.points.length) return;
    this.focus = (this.focus + delta + this.points.length) % this.points.length;
    const s = this.toScreen(this.focus);
    const c = this.canvas();
    if (s.x < 20 || s.y < 20 || s.x > c.clientWidth - 20 || s.y > c.clientHeight - 20) {
      this.view.tx += c.clientWidth / 2 - s.x;
      this.view.ty += c.clientHeight / 2 - s.y;
    }
    this.draw();
    this.tip(this.focus);
  },
};

window.collabkitMap = map; // for the browser tests: map.points and map.toScreen(i)

// -- start -------------------------------------------------------------------------------------

function start() {
  const findSearch = debounce((q) => searchInto(q, $("find-results"), findRow).catch(showError), 150);
  const rateSearch = debounce((q) => searchInto(q, $("rate-results"), rateRow).catch(showError), 150);
  $("find-q").addEventListener("input", (e) => findSearch(e.target.value));
  $("rate-q").addEventListener("input", (e) => rateSearch(e.target.value));
  for (const id of ["find-q", "rate-q"]) {
    $(id).addEventListener("keydown", (e) => {
      if (e.key === "ArrowDown") {
        const first = $(id === "find-q" ? "find-results" : "rate-results").querySelector("button");
        if (first) { e.preventDefault(); first.focus(); }
      }
    });
  }
  map.wire();
  searchInto("", $("find-results"), findRow).catch(showError);
  searchInto("", $("rate-results"), rateRow).catch(showError);
  loadModel() // the capabilities decide which sections ask the service
    .then(() => {
      if (!can("item_vectors")) $("neighbours").replaceChildren(el("p", { class: "muted", text: `${cannot("item_vectors")} Search still lists titles and their ratings.` }));
      loadBiases();
      map.load();
      updateRecommendations();
    })
    .catch(showError);
}

document.addEventListener("DOMContentLoaded", start);
