// tablelm web page: a prompt box, a parameter panel generated from GET /params, and the
// answer of GET /ask rendered as cards and sections.
//
// Safety rule: the DOM is built with createElement + textContent only. No data from the
// server, the corpus or the prompt ever goes through innerHTML, so a prompt or corpus text
// containing <script> is shown as text.
"use strict";

const state = {
  params: [],          // settable registry rows from /params
  defaults: {},        // name -> model default (as sent back by /params)
  overrides: {},       // name -> value the user changed (strings, as typed)
  kMax: 100,
  controller: null,    // AbortController of the request in flight
  seq: 0,              // answers rendered so far (tests and stale-response guard)
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

function fmt(value) {
  if (Array.isArray(value)) return value.join(",");
  return String(value);
}

function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text || "";
  s.classList.toggle("error", Boolean(isError));
  s.setAttribute("role", isError ? "alert" : "status");
}

// The access key of a server started with --keys: kept for this tab only, sent as a Bearer token.
function accessKey() { try { return sessionStorage.getItem("tablelm-key") || ""; } catch (e) { return ""; } }

async function getJSON(url, options) {
  const key = accessKey();
  const opts = Object.assign({}, options || {});
  if (key) opts.headers = Object.assign({}, opts.headers || {}, { Authorization: "Bearer " + key });
  const resp = await fetch(url, opts);
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const err = (body && body.error) || { code: "http_" + resp.status, message: resp.statusText, details: {} };
    throw Object.assign(new Error(err.message), { envelope: err });
  }
  return body;
}

// ----------------------------------------------------------------------------- parameters
function currentValue(name) {
  return name in state.overrides ? state.overrides[name] : fmt(state.defaults[name]);
}

// The few parameters a person tunes, first and with plain labels; the rest go under "Advanced".
const COMMON = {
  summary_sentences: "Sentences in the short answer",
  w_title: "Weight of title matches",
  w_tags: "Weight of tag matches",
  phrase_weight: "Weight of multi-word matches",
  prf_weight: "Feedback from the top answers",
  filter: "Only entities with this category or tag",
  ignore: "Words to ignore",
};

function paramControl(p) {
  const id = "param-" + p.name;
  const wrap = el("div", { class: "param", id: "wrap-" + p.name, dataset: { name: p.name } });
  const reset = el("button", {
    type: "button", class: "reset", title: "Reset to default " + fmt(state.defaults[p.name]),
    "aria-label": "Reset " + p.name + " to its default",
    onclick: () => { delete state.overrides[p.name]; syncControl(p); changed(); },
  }, "reset");
  const label = COMMON[p.name] ? el("label", { for: id }, COMMON[p.name], " ", el("code", { class: "muted" }, p.name))
    : el("label", { for: id }, p.name);
  wrap.append(el("div", { class: "param-head" }, label, reset));

  let input;
  if (p.type === "int" || p.type === "float") {
    const step = p.type === "int" ? "1" : "any";
    input = el("input", { id, type: "number", min: p.min, max: p.max, step, dataset: { param: p.name } });
    wrap.append(input);
    const span = p.max - p.min;
    if ((p.type === "float" && span <= 10) || (p.type === "int" && span <= 100)) {
      const range = el("input", {
        type: "range", min: p.min, max: p.max, step: p.type === "int" ? 1 : span / 100,
        "aria-label": p.name + " slider", dataset: { range: p.name },
      });
      range.addEventListener("input", () => { input.value = range.value; onInput(p, range.value); });
      wrap.append(range);
    }
    input.addEventListener("input", () => onInput(p, input.value));
  } else if (p.type === "options") {
    input = el("select", { id, dataset: { param: p.name } }, p.choices.map((c) => el("option", { value: c }, c)));
    input.addEventListener("change", () => onInput(p, input.value));
    wrap.append(input);
  } else if (p.type === "flag") {
    input = el("input", { id, type: "checkbox", dataset: { param: p.name } });
    input.addEventListener("change", () => onInput(p, input.checked ? "true" : "false"));
    wrap.append(input);
  } else if (p.type === "wordlist" && p.choices) {
    input = el("div", { id, class: "choices", dataset: { param: p.name } });
    for (const c of p.choices) {
      const box = el("input", { type: "checkbox", value: c, dataset: { choice: c } });
      box.addEventListener("change", () => {
        const picked = [...input.querySelectorAll("input:checked")].map((b) => b.value);
        onInput(p, picked.join(","));
      });
      input.append(el("label", {}, box, " " + c));
    }
    wrap.append(input);
  } else {
    input = el("input", { id, type: "text", placeholder: "comma-separated", dataset: { param: p.name } });
    input.addEventListener("input", () => onInput(p, input.value));
    wrap.append(input);
  }
  wrap.append(el("p", { class: "help" }, p.help + " Must be " + p.rule + "; default " + (fmt(state.defaults[p.name]) || "(empty)") + "."));
  return wrap;
}

function syncControl(p) {
  const value = currentValue(p.name);
  const wrap = $("wrap-" + p.name);
  if (!wrap) return;
  const input = $("param-" + p.name);
  if (p.type === "flag") input.checked = ["true", "1", "yes", "on"].includes(String(value).toLowerCase());
  else if (p.type === "wordlist" && p.choices) {
    const picked = String(value).split(",").map((s) => s.trim());
    for (const box of input.querySelectorAll("input")) box.checked = picked.includes(box.value);
  } else input.value = value;
  const range = wrap.querySelector("input[type=range]");
  if (range) range.value = value;
  wrap.classList.toggle("changed", p.name in state.overrides);
  wrap.classList.remove("invalid");
}

function onInput(p, value) {
  if (String(value) === fmt(state.defaults[p.name])) delete state.overrides[p.name];
  else state.overrides[p.name] = String(value);
  $("wrap-" + p.name).classList.toggle("changed", p.name in state.overrides);
  changed();
}

let debounce = null;
function changed() {
  clearTimeout(debounce);
  debounce = setTimeout(() => { if ($("prompt").value.trim()) run(true); }, 250);
}

async function loadParams() {
  const data = await getJSON("/params");
  state.params = data.params.filter((p) => p.settable);
  state.kMax = data.k.max;
  $("k").max = data.k.max;
  for (const p of state.params) state.defaults[p.name] = p.model_default;
  const box = $("params");
  clear(box);
  const common = Object.keys(COMMON).map((n) => state.params.find((p) => p.name === n)).filter(Boolean);
  for (const p of common) box.append(paramControl(p));
  const advanced = el("details", { id: "advanced", class: "advanced" }, el("summary", {}, "Advanced"));
  for (const p of state.params) if (!(p.name in COMMON)) advanced.append(paramControl(p));
  box.append(advanced);
  for (const p of state.params) syncControl(p);
  $("reset-all").addEventListener("click", () => {
    state.overrides = {};
    for (const p of state.params) syncControl(p);
    changed();
  });
}

// ----------------------------------------------------------------------------- asking
function askURL(path) {
  const q = new URLSearchParams();
  q.set("q", $("prompt").value);
  const k = $("k").value.trim();
  if (k && k !== "10") q.set("k", k);
  for (const [name, value] of Object.entries(state.overrides)) q.set(name, value);
  const sub = $("submodel").value;
  if (sub === "*") q.set("route", "all");
  else if (sub) q.set("s", sub);
  return path + "?" + q.toString();
}

async function run(replaceHistory) {
  const prompt = $("prompt").value;
  if (!prompt.trim()) return;
  const pageURL = askURL("/");
  if (location.pathname + location.search !== pageURL) {
    if (replaceHistory) history.replaceState(null, "", pageURL);
    else history.pushState(null, "", pageURL);
  }
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  setStatus("Asking…");
  try {
    const answer = await getJSON(askURL("/ask"), { signal: controller.signal });
    if (controller !== state.controller) return;
    for (const w of document.querySelectorAll(".param.invalid")) w.classList.remove("invalid");
    render(answer);
  } catch (err) {
    if (err.name === "AbortError") return;
    const env = err.envelope || { message: "Could not show the answer: " + String(err), details: {} };
    setStatus(env.message, true);
    const name = env.details && env.details.parameter;
    if (name && $("wrap-" + name)) $("wrap-" + name).classList.add("invalid");
  }
}

function runPrompt(text) {
  $("prompt").value = text;
  run(false);
  window.scrollTo({ top: 0 });
}

// ----------------------------------------------------------------------------- rendering
function mergeSpans(spans) {
  const sorted = spans.map((s) => [s[0], s[1]]).filter((s) => s[1] > s[0]).sort((a, b) => a[0] - b[0] || b[1] - a[1]);
  const out = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && s[0] <= last[1]) last[1] = Math.max(last[1], s[1]);
    else out.push(s);
  }
  return out;
}

function snippetNode(snippet) {
  const p = el("p", { class: "snippet" });
  if (!snippet || !snippet.text) return p;
  const text = snippet.text;
  let last = 0;
  if (snippet.start > 0) p.append("…");
  for (const [s, e] of mergeSpans(snippet.highlights || [])) {
    if (s < last) continue;
    p.append(text.slice(last, s), el("mark", {}, text.slice(s, e)));
    last = e;
  }
  p.append(text.slice(last));
  // the one rule of answer/snippets.py: an ellipsis only where the entity's text goes on
  if (snippet.end < (snippet.text_chars ?? snippet.end)) p.append("…");
  return p;
}

function cardNode(c) {
  const title = el("button", { type: "button", class: "title", onclick: () => openEntity(c.id), dataset: { id: c.id } },
    c.title || c.id);
  const li = el("li", { class: "card", id: "card-" + c.rank, dataset: { id: c.id, rank: c.rank } },
    el("div", { class: "card-head" },
      el("span", { class: "rank" }, c.rank + "."), title,
      el("span", { class: "score", title: "relevancy score" }, "score " + Number(c.score).toFixed(3))));
  const meta = el("div", { class: "meta" });
  if (c.category && c.category.length) meta.append(el("span", { class: "category" }, c.category.join(" › ")), " ");
  for (const t of (c.tags || []).slice(0, 8)) meta.append(el("span", { class: "tag" }, t));
  meta.append(el("span", { class: "entity-id" }, " id " + c.id));
  if (c.submodel) meta.append(el("span", { class: "submodel", title: "sub-model" }, " · " + c.submodel));
  li.append(meta);
  if (c.why && c.why.length) {
    const why = el("div", { class: "why" }, el("span", { class: "muted" }, "why: "));
    for (const w of c.why.slice(0, 8)) {
      const detail = "contribution" in w ? "+" + Number(w.contribution).toFixed(2) : "count " + w.corpus_count;
      const fields = Object.entries(w.tf || {}).map(([f, n]) => f + "×" + n).join(", ");
      why.append(el("span", { class: "term", title: w.role + (fields ? "; " + fields : "") },
        w.multitoken + " ", el("span", { class: "contribution" }, detail)));
    }
    li.append(why);
  }
  li.append(snippetNode(c.snippet));
  if (c.source) li.append(el("div", { class: "source" }, "source: " + c.source));
  return li;
}

function summaryNode(summary, cards) {
  // the short cited answer: quoted passages, each with the number of the card it comes from
  const box = el("div");
  if (!summary || !summary.passages || !summary.passages.length) return box;
  for (const p of summary.passages) {
    const cite = el("a", {
      href: "#card-" + p.n, class: "cite", title: p.entity + ", characters " + p.start + "–" + p.end,
      dataset: { entity: p.entity, start: p.start, end: p.end },
      onclick: (ev) => { ev.preventDefault(); openEntity(p.entity); },
    }, "[" + p.n + "]");
    box.append(el("p", { class: "passage", dataset: { entity: p.entity } }, p.text.replace(/\s+/g, " ").trim(), " ", cite));
  }
  return box;
}

function planNode(answer) {
  const plan = answer.plan || {};
  const box = el("div");
  const add = (label, items) => {
    if (items && items.length) box.append(el("span", {}, label + ": ", el("strong", {}, items.join(", "))));
  };
  if (plan.agent) add("agent", [plan.agent]);
  add("matched", plan.multitokens_matched);
  add("too frequent to count", (plan.dropped || {}).generic);
  add("not in the dictionary (words matched one by one)", plan.forced_not_in_dictionary);
  const phrases = plan.letter_phrases || [];
  const found = plan.letter_multitokens || [];
  const quoted = (xs) => xs.map((p) => "\u201c" + p + "\u201d");
  if (plan.letters_indexed === false) add("single letters not indexed in this model (tablelm upgrade)", quoted(phrases));
  else if (found.length) add("a single letter counts with the word next to it", quoted(found));
  else add("no entity says", quoted(phrases));
  add("single letters not matched", (plan.single_letters || []).filter((x) => !phrases.some((p) => p.split(" ").includes(x))));
  add("not in corpus", plan.unknown);
  add("excluded", plan.excluded);
  add("ignored", plan.ignored);
  add("only", plan.filters);
  const routing = answer.routing;
  if (routing) box.append(el("span", { class: "routing", title: routing.why }, "sub-models asked: ",
    el("strong", {}, routing.asked.join(", ")), " (" + routing.why + ")"));
  return box;
}

const SECTION_TITLES = { categories: "Categories", tags: "Tags", titles: "Titles", related: "Related", embeddings: "Follow-up prompts" };

function sectionsNode(sections) {
  const box = el("div");
  for (const [name, rows] of Object.entries(sections || {})) {
    if (!rows || !rows.length) continue;
    const list = el("ul");
    for (const r of rows) {
      const text = name === "embeddings" ? r.multitoken : r.label;
      const link = el("a", {
        href: "/?q=" + encodeURIComponent(text), class: "suggestion", dataset: { section: name },
        onclick: (ev) => { ev.preventDefault(); runPrompt(text); },
      }, text);
      const info = name === "embeddings" ? "PMI " + Number(r.pmi).toFixed(3) : "count " + r.count;
      list.append(el("li", { title: "via " + [].concat(r.via || []).join(", ") }, link, " ", el("span", { class: "count" }, info)));
    }
    box.append(el("section", { class: "section", dataset: { section: name } },
      el("h3", {}, SECTION_TITLES[name] || name), list));
  }
  return box;
}

function render(answer) {
  state.seq += 1;
  document.body.dataset.answerSeq = String(state.seq);
  clear($("samples"));
  const cards = $("cards");
  clear(cards);
  for (const c of answer.cards) cards.append(cardNode(c));
  const summary = $("summary");
  clear(summary);
  summary.append(...summaryNode(answer.summary, answer.cards).childNodes);
  summary.hidden = !summary.firstChild;
  const plan = $("plan");
  clear(plan);
  plan.append(planNode(answer));
  const sections = $("sections");
  clear(sections);
  sections.append(...sectionsNode(answer.sections).childNodes);
  const n = answer.cards.length;
  setStatus(n ? n + " cards in " + Number(answer.timings_ms.total).toFixed(1) + " ms for \u201c" + answer.prompt + "\u201d"
    : "No entity matches \u201c" + answer.prompt + "\u201d. Try other words" +
      (sections.firstChild ? ", or a suggestion below." : "."));
  const json = $("json-link");
  json.href = askURL("/ask");
  json.hidden = false;
}

// ----------------------------------------------------------------------------- entity view
async function openEntity(id) {
  const dialog = $("entity-dialog");
  try {
    const e = await getJSON("/entities/" + encodeURIComponent(id));
    $("entity-title").textContent = e.title || e.id;
    const fields = $("entity-fields");
    clear(fields);
    const row = (label, value) => { if (value) fields.append(el("dt", {}, label), el("dd", {}, value)); };
    row("id", e.id);
    row("category", (e.category || []).join(" › "));
    row("tags", (e.tags || []).join(", "));
    row("related", (e.related || []).join(", "));
    row("source", e.source);
    for (const [k, v] of Object.entries(e.metadata || {})) row(k, typeof v === "string" ? v : JSON.stringify(v));
    $("entity-text").textContent = e.text;
    dialog.dataset.id = e.id;
    if (typeof dialog.showModal === "function") dialog.showModal(); else dialog.setAttribute("open", "");
  } catch (err) {
    setStatus((err.envelope && err.envelope.message) || String(err), true);
  }
}

// ----------------------------------------------------------------------------- start
function fromURL() {
  const q = new URLSearchParams(location.search);
  $("prompt").value = q.get("q") || "";
  $("k").value = q.get("k") || "10";
  const sub = q.get("route") === "all" ? "*" : (q.get("s") || "");
  if ([...$("submodel").options].some((o) => o.value === sub)) $("submodel").value = sub;
  state.overrides = {};
  for (const [name, value] of q.entries()) {
    if (name !== "q" && name !== "k" && name !== "s" && name !== "route" && name in state.defaults) {
      state.overrides[name] = value;
    }
  }
  for (const p of state.params) syncControl(p);
}

async function loadSamples() {
  if ($("prompt").value.trim()) return;
  try {
    const data = await getJSON("/samples");
    const box = $("samples");
    clear(box);
    if (!data.prompts.length) return;
    const p = el("p", { class: "samples" }, el("span", { class: "muted" }, "Try: "));
    for (const s of data.prompts) {
      p.append(el("a", { href: "/?q=" + encodeURIComponent(s), onclick: (ev) => { ev.preventDefault(); runPrompt(s); } }, s));
    }
    box.append(p);
  } catch (err) { /* samples are a convenience */ }
}

async function start() {
  if (window.matchMedia("(max-width: 48rem)").matches) $("params-details").open = false;
  $("ask-form").addEventListener("submit", (ev) => { ev.preventDefault(); run(false); });
  $("k").addEventListener("input", changed);
  $("submodel").addEventListener("change", changed);
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    try { sessionStorage.setItem("tablelm-key", $("api-key").value.trim()); } catch (e) { /* private mode */ }
    location.reload();
  });
  window.addEventListener("popstate", () => { fromURL(); if ($("prompt").value.trim()) run(true); });
  try {
    await loadParams();
    const info = await getJSON("/info");
    $("model-info").textContent = Number(info.stats.entities).toLocaleString() + " entities, " +
      Number(info.stats.multitokens).toLocaleString() + " multitokens · " + (info.corpus.sources || []).join(", ");
    $("prompt").maxLength = info.limits.max_prompt_chars;
    if (info.submodels && info.submodels.length) {  // a split model: let the user pin a sub-model
      for (const s of info.submodels) {
        $("submodel").append(el("option", { value: s.name }, s.name + " (" + Number(s.entities).toLocaleString() + ")"));
      }
      $("submodel-label").hidden = false;
    }
  } catch (err) {
    if (err.envelope && err.envelope.code === "unauthorized") {  // a server with --keys: ask for one
      $("key-form").hidden = false;
      setStatus(accessKey() ? "This key is not valid here; enter another." : err.envelope.message, true);
      return;
    }
    setStatus("Could not reach the server: " + ((err.envelope && err.envelope.message) || err), true);
    return;
  }
  fromURL();
  if (!$("prompt").value.trim()) await loadSamples();  // ready means: the sample prompts are shown too
  document.body.dataset.ready = "1";
  if ($("prompt").value.trim()) run(true);
}

document.addEventListener("DOMContentLoaded", start);
