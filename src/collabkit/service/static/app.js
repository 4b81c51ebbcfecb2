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
let minCount = 10; // neighbours with fewer ratings are mostly noise; set from the server's default (GET /catalogue), then /biases
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

let catalogue = { kind: "item", scale: { low: 1, high: 5, step: 1, liked: 4 }, genres: [], ranker: null };
let scoreKind = "rating";
let modelInfo = null;
const noun = (n) => (catalogue.kind === "movie" ? "movie" : "item") + (n === 1 ? "" : "s");
const starsText = (v) => `${Number.isInteger(v) ? v : v.toFixed(1)} ★`;
const trimTitle = (t) => t.replace(/\s*\(\d{4}\)\s*$/, "");

async function loadModel() {
  const [health, info, cat] = await Promise.all([api("health"), api("model"), api("catalogue")]);
  capabilities = health.capabilities || {};
  modelName = info.model;
  modelInfo = info;
  catalogue = cat;
  minCount = cat.min_count;
  $("f-min-count").value = String(cat.min_count); // the server's default, stated where it can be changed
  scoreKind = info.score_kind;
  const data = info.data ? ` trained on ${String(info.data.name).split(/[\\/]/).pop()}` : "";
  $("model-line").textContent =
    `${info.model} model${data}: ${health.n_items.toLocaleString()} ${noun(health.n_items)}, ${plural(health.n_users, "user")}`;
  document.title = `collabkit: ${info.model} model`;
  $("rate-h").textContent = `Rate a few ${noun(2)}`;
  $("find-h").textContent = `Find ${cat.kind === "movie" ? "a movie" : "an item"} and its neighbours`;
  const sc = cat.scale;
  $("rate-note").textContent = `Give ${starsText(sc.low)} to ${starsText(sc.high)} (the scale of this model's training ratings) to a few ${noun(2)}; ` +
    `the recommendations follow every rating. ${starsText(sc.liked)} or more counts as liked.`;
  const select = $("f-genre");
  for (const g of cat.genres) select.append(el("option", { value: g, text: g }));
  $("genre-label").hidden = !cat.genres.length;
  if (cat.year_min !== null) {
    for (const id of ["f-year-min", "f-year-max"]) { $(id).min = cat.year_min; $(id).max = cat.year_max; }
    $("f-year-min").placeholder = String(cat.year_min);
    $("f-year-max").placeholder = String(cat.year_max);
  } else {
    for (const id of ["f-year-min", "f-year-max"]) $(id).closest("label").hidden = true;
  }
  renderAbout(cat.about || []);
  renderSettings(info);
  renderHistory(info.history || []);
}

// The side columns a new user may state (a hybrid model reads them): a choice per column.
function renderAbout(columns) {
  const box = $("about");
  box.hidden = !columns.length || !can("fold_in");
  for (const c of columns) {
    const id = `about-${c.name}`;
    const control = c.kind === "number"
      ? el("input", { id, type: "number", inputmode: "decimal", "data-about": c.name, "data-number": true,
        placeholder: c.levels.length > 1 ? c.levels[Math.floor(c.levels.length / 2)].replace(/[^0-9.]+/g, " ").trim().split(" ")[0] : "" })
      : el("select", { id, "data-about": c.name }, el("option", { value: "", text: "—" }),
        ...c.levels.map((v) => el("option", { value: v, text: v })));
    control.addEventListener("change", () => updateRecommendations());
    box.append(el("label", { for: id }, c.name.replace(/_/g, " "), " ", control));
  }
}

function aboutValues() {
  const out = {};
  for (const control of $("about").querySelectorAll("[data-about]")) {
    const v = control.value.trim();
    if (v === "") continue;
    if (control.dataset.number !== undefined) {
      if (Number.isFinite(Number(v))) out[control.dataset.about] = Number(v);
    } else out[control.dataset.about] = v;
  }
  return out;
}

function addPairs(list, pairs) {
  list.replaceChildren();
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === "" || (typeof v === "number" && !Number.isFinite(v))) continue;
    if (typeof v === "object" && !Array.isArray(v) && !Object.keys(v).length) continue;
    list.append(el("dt", { text: k }), el("dd", { text: typeof v === "object" ? JSON.stringify(v) : String(v) }));
  }
}

const shown = (v) => (typeof v !== "number" ? v : Number.isInteger(v) ? v.toLocaleString() : fmt(v, 4));

function renderSettings(info) {
  const r = info.results || {};
  const s = r.settings || {};
  const family = Object.entries(info.settings || {}).map(([k, v]) => [k.replace(/_/g, " "), Array.isArray(v) && v.length === 2 && k.endsWith("range") ? v.join(" to ") : shown(v)]);
  const gradient = can("lr_find") && (info.history || []).length > 0; // a gradient fit's recipe; a closed-form fit has none
  const trained = gradient ? [
    ["recipe", r.recipe],
    ["epochs", s.epochs],
    ["batch size", s.bs],
    ["learning rate", s.lr],
    ["weight decay", s.wd],
  ] : [["fit", "in closed form (no epochs)"]];
  const rk = catalogue.ranker;
  addPairs($("settings-list"), [
    ["model", info.model],
    ["scores", info.score_kind === "rating" ? "predicted ratings" : "ranking scores (not stars)"],
    ...family,
    ...trained,
    ["seed", s.seed],
    ["data", info.data ? `${info.data.name} (${Number(info.data.n_rows).toLocaleString()} rows)` : null],
    ["rating scale", `${starsText(catalogue.scale.low)} to ${starsText(catalogue.scale.high)}, steps of ${catalogue.scale.step}`],
    ["new users' lists", rk ? `ordered by ${rk.family}, fitted beside it at start-up in ${fmt(rk.seconds, 2)} s` : `ordered by ${info.model}`],
  ]);
  const figures = [];
  const valid = r.valid || r.test || {};
  const names = { rmse: "RMSE", mae: "MAE", mse: "MSE", n: "rows scored", fallback: "rows answered by the mean" };
  for (const [k, v] of Object.entries(valid)) {
    if (typeof v === "number" && Number.isFinite(v)) figures.push([`held-out ${names[k] || k.replace(/_/g, " ")}`, shown(v)]);
  }
  const ranking = r.ranking || {};
  for (const [k, v] of Object.entries(ranking)) {
    if (typeof v === "number" && Number.isFinite(v)) figures.push([`held-out ${k.replace(/_/g, " ")}`, shown(v)]);
  }
  if (!Object.keys(ranking).length) figures.push(["held-out ranking figures", "none saved with this model (collabkit evaluate MODEL --data … --ranking computes them)"]);
  if (r.n_train) figures.push(["training rows", Number(r.n_train).toLocaleString()]);
  if (r.n_valid) figures.push(["held-out rows", Number(r.n_valid).toLocaleString()]);
  if (r.fit_seconds) figures.push(["fit time", `${fmt(r.fit_seconds, r.fit_seconds < 1 ? 2 : 1)} s`]);
  addPairs($("figures-list"), figures);
}

function renderHistory(history) {
  const box = $("curve");
  const tableBox = $("history-table");
  if (!history.length) { // a closed-form fit: no epochs to chart; the settings say how it was fitted
    box.replaceChildren(el("p", { class: "muted", text: "This model keeps no epoch history." }));
    $("training").hidden = true;
    $("nav-training").hidden = true;
    return;
  }
  const series = ["train_loss", "valid_loss"].filter((k) => history.some((h) => typeof h[k] === "number"));
  const colours = { train_loss: "#1f6fb4", valid_loss: "#d9622b" };
  const W = Math.max(300, Math.round(box.clientWidth || 520)), H = 230, L = 58, R = 14, T = 28, B = 38; // drawn at its shown size: text stays 13 px
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
  svg.setAttribute("width", String(W));
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
  const every = Math.ceil(n / Math.max(1, Math.floor((W - L - R) / 36)));
  history.forEach((h, i) => { if (i % every === 0 || i === n - 1) add("text", { x: x(i), y: H - 18, "text-anchor": "middle" }, String(h.epoch ?? i)); });
  add("text", { x: (L + W - R) / 2, y: H - 2, "text-anchor": "middle" }, "epoch");
  for (const k of series) {
    const pts = history.map((h, i) => (typeof h[k] === "number" ? `${x(i)},${y(h[k])}` : null)).filter(Boolean);
    add("polyline", { points: pts.join(" "), fill: "none", stroke: colours[k], "stroke-width": 2.5 });
    history.forEach((h, i) => {
      if (typeof h[k] === "number") add("circle", { cx: x(i), cy: y(h[k]), r: 3.5, fill: colours[k] }).append(
        Object.assign(document.createElementNS(ns, "title"), { textContent: `epoch ${h.epoch ?? i}: ${k} ${fmt(h[k], 4)}` }));
    });
  }
  series.forEach((k, j) => {
    add("rect", { x: L + 4 + j * 120, y: 8, width: 14, height: 4, fill: colours[k] });
    add("text", { x: L + 22 + j * 120, y: 14 }, k.replace("_", " "));
  });
  box.replaceChildren(svg);
  const cols = Object.keys(history[0]).filter((k) => k !== "time");
  const table = el("table", {}, el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", { class: c === "epoch" ? "" : "num", text: c.replace("_", " ") })))));
  const body = el("tbody");
  for (const h of history) body.append(el("tr", {}, ...cols.map((c) => el("td", { class: c === "epoch" ? "" : "num", text: typeof h[c] === "number" && c !== "epoch" ? fmt(h[c], 4) : String(h[c] ?? "–") }))));
  table.append(body);
  tableBox.replaceChildren(table);
}

// -- biases ------------------------------------------------------------------------------------

function layoutCards() {
  // a hidden card leaves its row-mate the whole width
  const pairs = [["biases", "training"], ["training", "biases"]];
  for (const [a, b] of pairs) $(a).classList.toggle("alone", !$(a).hidden && $(b).hidden);
}

async function loadBiases() {
  if (!can("biases")) {
    $("biases-note").textContent = `${cannot("biases")} Train a dotbias model to see the items liked beyond anyone's taste.`;
    $("biases").querySelector(".two").hidden = true;
    $("biases").hidden = true;
    $("nav-biases").hidden = true;
    layoutCards();
    return;
  }
  layoutCards();
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

// -- find a title, neighbours ------------------------------------------------------------------

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
      el("p", { class: "muted", text: `${plural(res.n_ratings, "rating")} in training; neighbours among ${noun(2)} with at least ${plural(res.min_count, "rating")}. Similarity: how nearly the two vectors point the same way (1: the same).` }),
      el("div", { class: "scroll" }, el("table", { id: "neighbours-table", "aria-labelledby": "neighbours-h" },
        el("thead", {}, el("tr", {}, el("th", { text: "title" }), el("th", { class: "num", text: "similarity" }), el("th", { class: "num", text: "ratings" }))),
        el("tbody", {}, ...rows))));
    map.highlight(res.item, res.similar_items.map((s) => s.item));
    showError(null);
  } catch (error) {
    box.replaceChildren(el("p", { class: "error", text: error.message }));
  }
}

// -- rate a few titles -------------------------------------------------------------------------

const ratings = new Map(); // item id (as text) -> { title, rating }
const notInterested = new Map(); // item id (as text) -> title: left out of every list this session
let chosenUser = null; // an existing user whose list is shown, or null for "your ratings"
let recRequest = 0;

function scaleValues() {
  const { low, high, step } = catalogue.scale;
  const out = [];
  for (let v = low; v <= high + 1e-9; v += step) out.push(Math.round(v * 10) / 10);
  return out.length <= 20 ? out : [low, high];
}

function stars(item) {
  const current = ratings.get(String(item.item));
  const values = scaleValues();
  const half = catalogue.scale.step === 0.5;
  const group = el("span", { class: `stars${half ? " half" : values.length > 6 ? " many" : ""}`, role: "group", "aria-label": `Rate ${item.title}` });
  for (const s of values) {
    group.append(el("button", {
      type: "button", class: current && current.rating >= s ? "on" : "",
      "aria-label": `${s} star${s === 1 ? "" : "s"} for ${item.title}`, "aria-pressed": current && current.rating === s ? "true" : "false",
      "data-stars": String(s), title: `${s}`,
      onclick: () => rate(item, s),
    }, el("span", { text: "★" })));
  }
  return group;
}

function rateRow(item) {
  return el("li", { "data-item": String(item.item) }, el("span", { class: "title" }, item.title, " ", el("span", { class: "count", text: `(${plural(item.n_ratings, "rating")})` })), stars(item));
}

function rate(item, value) {
  ratings.set(String(item.item), { title: item.title, rating: value, n_ratings: item.n_ratings });
  chooseUser(null, false);
  refreshRatings();
}

function refreshRatings() {
  const list = $("rated");
  list.replaceChildren();
  if (!ratings.size) list.append(el("li", { class: "muted", text: "None yet." }));
  for (const [id, r] of ratings) {
    list.append(el("li", { class: "chip" }, `${r.title} `, el("span", { class: "score", text: starsText(r.rating) }),
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

// -- existing users ----------------------------------------------------------------------------

async function searchUsers(q) {
  const list = $("user-results");
  const ticket = String(Number(list.dataset.ticket || 0) + 1);
  list.dataset.ticket = ticket;
  const res = await api(`users?q=${encodeURIComponent(q)}&limit=12`);
  if (list.dataset.ticket !== ticket) return;
  list.replaceChildren(...res.users.map((u) => el("li", {}, el("button", {
    type: "button", "data-user": String(u.user), "aria-pressed": String(chosenUser) === String(u.user) ? "true" : "false",
    onclick: () => chooseUser(u.user),
  }, `user ${u.user} `, el("span", { class: "count", text: `${u.n_ratings.toLocaleString()} ratings` })))));
  if (!res.users.length) list.append(el("li", { class: "muted", text: `No user id starts with “${q}”.` }));
}

function chooseUser(user, refresh = true) {
  chosenUser = user;
  for (const b of $("user-results").querySelectorAll("button[data-user]")) b.setAttribute("aria-pressed", String(b.dataset.user) === String(user) ? "true" : "false");
  if (user === null) $("user-history").replaceChildren();
  if (refresh) updateRecommendations();
}

function renderHistoryOf(res) {
  const box = $("user-history");
  const more = res.n_ratings > res.ratings.length ? ` (the best ${res.ratings.length} shown)` : "";
  box.replaceChildren(
    el("h3", { id: "history-h", text: `User ${res.user}'s ratings: ${res.n_ratings.toLocaleString()}${more}` }),
    el("ul", { class: "history", "aria-labelledby": "history-h" }, ...res.ratings.map((r) => el("li", {},
      el("span", { text: r.title }), el("span", { class: "score", text: starsText(r.rating) })))),
    el("button", { type: "button", text: "Back to your own ratings", onclick: () => chooseUser(null) }));
}

// -- the recommendations -----------------------------------------------------------------------

function filterParams() {
  const p = new URLSearchParams();
  const genre = $("f-genre").value;
  const lo = $("f-year-min").value, hi = $("f-year-max").value, mc = $("f-min-count").value;
  if (genre) p.set("genre", genre);
  if (lo !== "" && Number.isFinite(Number(lo))) p.set("year_min", String(Math.trunc(Number(lo))));
  if (hi !== "" && Number.isFinite(Number(hi))) p.set("year_max", String(Math.trunc(Number(hi))));
  if (mc !== "" && Number(mc) >= 1) p.set("min_count", String(Math.trunc(Number(mc)))); // 1 too: the default is higher
  return p;
}

function sourceLine(res) {
  const rk = catalogue.ranker;
  if (res.ranked_by && res.stars_by && res.ranked_by !== res.stars_by) {
    return `Ordered by an ${res.ranked_by} ranking model fitted beside this ${res.stars_by} model at start-up` +
      `${rk ? ` (${fmt(rk.seconds, 1)} s)` : ""} from the same training ratings; the stars are the ${res.stars_by} model's predicted rating.`;
  }
  if (res.stars_by) return `Ordered by the ${res.stars_by} model's predicted rating${chosenUser === null && !likedCount() ? " (nothing liked yet)" : ""}.`;
  return `Ordered by the ${res.ranked_by || modelName} model's ranking score (larger is better; not stars).`;
}

const likedCount = () => [...ratings.values()].filter((r) => r.rating >= catalogue.scale.liked).length;

function recRow(r, res) {
  const stars = res.score_kind === "rating";
  const score = stars ? `${fmt(r.rating, 1)} ★ predicted${catalogue.scale.high !== 5 ? ` (of ${catalogue.scale.high})` : ""}`
    : `score ${Number.isInteger(r.rating) ? r.rating.toLocaleString() : fmt(r.rating, 3)}`;
  return el("li", { "data-item": String(r.item) },
    el("div", { class: "body" },
      el("button", { class: "linkish rec-title", type: "button", text: r.title, onclick: () => showNeighbours(r.item) }), " ",
      el("span", { class: "score", text: score }),
      el("span", { class: "why", text: r.why.text })),
    el("button", { class: "nope", type: "button", "aria-label": `Not interested in ${r.title}`, title: "Not interested",
      onclick: () => { notInterested.set(String(r.item), r.title); updateRecommendations(); } },
    el("span", { class: "long", text: "Not interested" }), el("span", { class: "short", text: "✕" })));
}

function popularRow(item) {
  return el("li", { "data-item": String(item.item) },
    el("div", { class: "body" },
      el("button", { class: "linkish rec-title", type: "button", text: item.title, onclick: () => showNeighbours(item.item) }), " ",
      el("span", { class: "score", text: `${plural(item.n_ratings, "rating")}${item.mean_rating !== null ? ` · mean ${fmt(item.mean_rating, 1)} ★` : ""}` })),
    el("button", { class: "nope", type: "button", "aria-label": `Not interested in ${item.title}`, title: "Not interested",
      onclick: () => { notInterested.set(String(item.item), item.title); updateRecommendations(); } },
    el("span", { class: "long", text: "Not interested" }), el("span", { class: "short", text: "✕" })));
}

function renderNope() {
  const line = $("nope-line");
  line.hidden = !notInterested.size;
  line.replaceChildren(`Not interested (left out of every list): ${[...notInterested.values()].join(", ")} `,
    el("button", { type: "button", class: "linkish", text: "undo all", onclick: () => { notInterested.clear(); updateRecommendations(); } }));
}

async function updateRecommendations() {
  const ticket = ++recRequest;
  const list = $("recs");
  renderNope();
  const params = filterParams();
  const exclude = [...notInterested.keys()];
  list.setAttribute("aria-busy", "true");
  try {
    let rows, heading, source;
    if (chosenUser !== null) {
      for (const x of exclude) params.append("exclude", x);
      const res = await api(`profile?user=${encodeURIComponent(chosenUser)}&n=10&${params}`);
      if (ticket !== recRequest) return;
      renderHistoryOf(res);
      heading = `Recommended for user ${res.user} (${plural(res.n_ratings, "rating")})`;
      source = sourceLine(res);
      rows = res.recommendations.map((r) => recRow(r, res));
    } else if ((!ratings.size && !Object.keys(aboutValues()).length) || !can("fold_in")) {
      for (const x of exclude) params.append("exclude", x);
      const res = await api(`popular?n=10&${params}`);
      if (ticket !== recRequest) return;
      heading = `Popular: the most rated ${noun(2)}`;
      source = `Popular means ${res.definition}: a count, not a prediction. Rate a few ${noun(2)} for your own list.` +
        (can("fold_in") ? "" : ` ${cannot("fold_in")}`);
      rows = res.items.map(popularRow);
    } else {
      const about = aboutValues();
      const body = { ratings: Object.fromEntries([...ratings].map(([id, r]) => [id, r.rating])), about, n: 10, exclude };
      for (const [k, v] of params) body[k] = k === "genre" ? v : Number(v);
      const res = await api("recommend", { method: "POST", body: JSON.stringify(body) });
      if (ticket !== recRequest) return;
      const stated = Object.entries(about).map(([k, v]) => `${k.replace(/_/g, " ")} ${v}`);
      heading = `Recommended for you (${[...(ratings.size ? [plural(ratings.size, "rating")] : []), ...stated].join("; ")})`;
      source = sourceLine(res);
      rows = res.recommendations.map((r) => recRow(r, res));
      if (res.ignored.length) rows.push(el("li", { class: "muted", text: `${plural(res.ignored.length, "rated item")} left out: no training ratings.` }));
    }
    $("recs-h").textContent = heading;
    $("recs-source").textContent = source;
    if (!rows.length) rows.push(el("li", { class: "muted", text: "Nothing passes these filters." }));
    list.replaceChildren(...rows);
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
  base: { sx: 1, sy: 1, cx: 0, cy: 0 },
  hover: -1,
  placed: [], // the labels drawn: {x, y, w, h, i, title} in canvas pixels (for the tests)
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
      this.points = data.points.slice(0, 300); // the most rated first: the rest are noise at this size
      this.genres = data.genres;
      const a = data.axes;
      $("axis-x").textContent = a[0] ? `Across (${fmt(a[0].variance_share * 100, 0)}% of the variance): from ${a[0].low_end[0]} to ${a[0].high_end[0]}.` : "";
      $("axis-y").textContent = a[1] ? `Up (${fmt(a[1].variance_share * 100, 0)}%): from ${a[1].low_end[0]} to ${a[1].high_end[0]}.` : "";
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
    // fit the view to the most rated titles (the labelled ones), not to the rare items' outliers,
    // which would squeeze the picture into the middle third
    const c = this.canvas();
    const w = c.clientWidth, h = c.clientHeight;
    if (!this.points.length || !w || !h) return;
    const core = this.points.slice(0, Math.max(20, Math.round(this.labelBudget() * 1.5)));
    const xs = core.map((p) => p.x), ys = core.map((p) => p.y);
    const minX = Math.min(...xs), maxX = Math.max(...xs), minY = Math.min(...ys), maxY = Math.max(...ys);
    const spanX = Math.max(maxX - minX, 1e-9), spanY = Math.max(maxY - minY, 1e-9);
    const padX = Math.min(110, w * 0.18), padY = 22; // room for a label on either side
    // each axis scaled to fill its side, as the report's plot does (PC1 spreads wider than PC2)
    this.base = { sx: (w - 2 * padX) / spanX, sy: (h - 2 * padY) / spanY, cx: (minX + maxX) / 2, cy: (minY + maxY) / 2 };
    this.view = { scale: 1, tx: 0, ty: 0 };
  },

  labelBudget() {
    const w = this.canvas().clientWidth || 800;
    return w < 520 ? 18 : w < 900 ? 30 : 50;
  },

  shortTitle(t) {
    const w = this.canvas().clientWidth || 800;
    const most = w < 520 ? 18 : 28;
    const bare = t.replace(/\s*\(\d{4}\)\s*$/, "").replace(/^(.*), (The|A|An)$/, "$2 $1");
    return bare.length > most ? bare.slice(0, most - 1).trimEnd() + "…" : bare;
  },

  toScreen(i) {
    const p = this.points[i];
    const c = this.canvas();
    const k = this.view.scale;
    return { x: c.clientWidth / 2 + (p.x - this.base.cx) * this.base.sx * k + this.view.tx, y: c.clientHeight / 2 - (p.y - this.base.cy) * this.base.sy * k + this.view.ty };
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
    // labels: the selected title and its neighbours first, then the focused or hovered one, then the
    // most rated; each tries four places beside its point, inside the canvas, and is left out if
    // every place would overlap a label already drawn (so no two labels ever overlap)
    const placed = [];
    const overlaps = (r) => placed.some((q) => r.x < q.x + q.w && q.x < r.x + r.w && r.y < q.y + q.h && q.y < r.y + r.h);
    const ring = (i, strong) => {
      const s = this.toScreen(i);
      g.beginPath();
      g.arc(s.x, s.y, this.radius(this.points[i]) + 3, 0, 2 * Math.PI);
      g.strokeStyle = strong ? "#d9622b" : ink;
      g.lineWidth = 2;
      g.stroke();
    };
    const label = (i, weight, force) => {
      const p = this.points[i];
      const s = this.toScreen(i);
      if (s.x < 0 || s.y < 0 || s.x > w || s.y > h || placed.some((q) => q.i === i)) return; // one label per title
      const text = this.shortTitle(p.title);
      g.font = `${weight} 12px system-ui, sans-serif`;
      const tw = g.measureText(text).width + 4, th = 15, r = this.radius(p) + 3;
      const tries = [[s.x + r, s.y - th / 2], [s.x - r - tw, s.y - th / 2], [s.x - tw / 2, s.y - r - th], [s.x - tw / 2, s.y + r]];
      let spot = null;
      for (const [x0, y0] of tries) {
        const rect = { x: Math.min(Math.max(2, x0), w - tw - 2), y: Math.min(Math.max(2, y0), h - th - 2), w: tw, h: th };
        if (!overlaps(rect)) { spot = rect; break; }
      }
      if (!spot && !force) return;
      spot = spot || { x: Math.min(Math.max(2, tries[0][0]), w - tw - 2), y: Math.min(Math.max(2, tries[0][1]), h - th - 2), w: tw, h: th };
      placed.push({ ...spot, i, title: p.title });
      g.fillStyle = halo;
      g.fillRect(spot.x, spot.y, spot.w, spot.h);
      g.fillStyle = ink;
      g.textBaseline = "middle";
      g.fillText(text, spot.x + 2, spot.y + th / 2 + 0.5);
    };
    const halo = getComputedStyle(document.documentElement).getPropertyValue("--bg").trim() ? `color-mix(in srgb, ${getComputedStyle(document.documentElement).getPropertyValue("--bg").trim()} 78%, transparent)` : "rgba(255,255,255,0.78)";
    const marked = [];
    this.points.forEach((p, i) => { if (this.isMarked(p)) marked.push(i); });
    const sel = marked.filter((i) => String(this.points[i].item) === String(this.selected));
    for (const i of marked) ring(i, sel.includes(i));
    if (this.focus >= 0) ring(this.focus, true);
    if (this.hover >= 0) ring(this.hover, false);
    for (const i of sel) label(i, "700", true);
    for (const i of marked) if (!sel.includes(i)) label(i, "600", false);
    if (this.focus >= 0) label(this.focus, "700", true);
    if (this.hover >= 0) label(this.hover, "600", false); // the tip in the corner names it anyway
    const budget = this.selected === null ? this.labelBudget() : Math.round(this.labelBudget() / 2);
    for (let i = 0; i < Math.min(budget, this.points.length); i++) if (!placed.some((q) => q.i === i)) label(i, "400", false);
    this.placed = placed;
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
    tip.hidden = false; // in the map's corner (style.css), never over the labels beside the pointer
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

window.collabkitMap = map; // for the browser tests: map.points, map.toScreen(i) and map.placed

// -- start -------------------------------------------------------------------------------------

function start() {
  const findSearch = debounce((q) => searchInto(q, $("find-results"), findRow).catch(showError), 150);
  const rateSearch = debounce((q) => searchInto(q, $("rate-results"), rateRow).catch(showError), 150);
  const userSearch = debounce((q) => searchUsers(q).catch(showError), 150);
  const refilter = debounce(() => updateRecommendations(), 250);
  $("find-q").addEventListener("input", (e) => findSearch(e.target.value));
  $("rate-q").addEventListener("input", (e) => rateSearch(e.target.value));
  $("user-q").addEventListener("input", (e) => userSearch(e.target.value));
  for (const id of ["f-genre", "f-year-min", "f-year-max", "f-min-count"]) $(id).addEventListener(id === "f-genre" ? "change" : "input", refilter);
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
  loadModel() // the capabilities and the rating scale decide what the page asks and shows
    .then(() => {
      searchInto("", $("rate-results"), rateRow).catch(showError);
      searchUsers("").catch(showError);
      if (!can("item_vectors")) $("neighbours").replaceChildren(el("p", { class: "muted", text: `${cannot("item_vectors")} Search still lists titles and their ratings.` }));
      loadBiases();
      map.load();
      updateRecommendations();
    })
    .catch(showError);
}

document.addEventListener("DOMContentLoaded", start);
