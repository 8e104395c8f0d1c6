// Holdfast web page: plain JS, no build step. Talks to /api/v1 with the session cookie.
"use strict";

const $ = (id) => document.getElementById(id);
let me = null;
let view = null; // {camera, start: Date, end: Date, segments, gaps}
let purgeOffset = 0;

function say(text, ok = false) { const m = $("msg"); m.textContent = text || ""; m.className = ok ? "ok" : ""; }

async function api(path, opts = {}) {
  const r = await fetch("/api/v1" + path, { credentials: "same-origin", ...opts });
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail || detail; } catch (e) { /* not JSON */ }
    const err = new Error(`${r.status}: ${detail}`); err.status = r.status; throw err;
  }
  return r;
}
const getJSON = async (path) => (await api(path)).json();
const postJSON = async (path, body) => (await api(path, {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })).json();

// -- time: every time a person reads or types is in the site's zone, 24-hour; UTC on hover --
let zone = "UTC";
let sites = [];
const partsFmt = {};
function partsIn(date, tz) {
  const f = partsFmt[tz] ||= new Intl.DateTimeFormat("en-GB", { timeZone: tz, hourCycle: "h23", year: "numeric",
    month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const p = {}; for (const x of f.formatToParts(date)) p[x.type] = x.value; return p;
}
const asDate = (d) => (d instanceof Date ? d : new Date(d));
/** "2026-11-21 10:00:00" in the site's zone. */
function fmt(d) { if (d == null || d === "") return ""; const p = partsIn(asDate(d), zone); return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`; }
function fmtTime(d) { const p = partsIn(asDate(d), zone); return `${p.hour}:${p.minute}:${p.second}`; }
function utcText(d) { return asDate(d).toISOString().replace(".000Z", "Z"); }
function zoneOffsetMs(date, tz) {
  const p = partsIn(date, tz);
  return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) - Math.floor(date.getTime() / 1000) * 1000;
}
/** A time typed in the site's zone ("YYYY-MM-DD HH:MM[:SS]", 24-hour) as a Date. */
function parseZoned(text) {
  const m = String(text).trim().match(/^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2}))?$/);
  if (!m) throw new Error(`“${text}”: write times as YYYY-MM-DD HH:MM:SS (24-hour, ${zone})`);
  const guess = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
  let t = guess - zoneOffsetMs(new Date(guess), zone);
  t = guess - zoneOffsetMs(new Date(t), zone); // the offset at the moment itself (DST edges)
  return new Date(t);
}
function isoOf(text) { return utcText(parseZoned(text)); }
function localOf(date) { return fmt(date); }
function setZone(tz) {
  if (tz && tz !== zone) { // keep the moments already typed, shown in the new zone
    const inputs = [...document.querySelectorAll("input.when")];
    const typed = inputs.map((i) => { try { return i.value ? parseZoned(i.value) : null; } catch (e) { return null; } });
    zone = tz;
    inputs.forEach((i, k) => { if (typed[k]) i.value = fmt(typed[k]); });
  }
  for (const e of document.querySelectorAll(".zone-name")) e.textContent = zone;
}
function siteZone(siteId) { return (sites.find((x) => x.id === siteId) || sites[0] || { timezone: "UTC" }).timezone; }
/** A table cell with a time in the site's zone; UTC on hover. */
function timeTd(iso) { const c = td(iso ? fmt(iso) : ""); if (iso) { c.title = utcText(iso); c.className = "time"; } return c; }
function rangeTd(a, b) { const c = td(a ? `${fmt(a)} – ${fmt(b)}` : ""); if (a) { c.title = `${utcText(a)} – ${utcText(b)} (UTC)`; c.className = "time"; } return c; }
function td(text) { const c = document.createElement("td"); c.textContent = text ?? ""; return c; }

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
/** Server data for reading: nested lists of name/value, times in the site's zone (UTC on hover). */
function dataView(v) {
  if (Array.isArray(v)) {
    if (!v.length) return document.createTextNode("none");
    const ol = document.createElement("ol"); for (const x of v) { const li = document.createElement("li"); li.append(dataView(x)); ol.append(li); } return ol;
  }
  if (v && typeof v === "object") {
    const dl = document.createElement("dl");
    for (const [k, x] of Object.entries(v)) { const dt = document.createElement("dt"); dt.textContent = k.replaceAll("_", " "); const dd = document.createElement("dd"); dd.append(dataView(x)); dl.append(dt, dd); }
    return dl;
  }
  if (typeof v === "string" && ISO_TIME.test(v)) { const t = document.createElement("time"); t.dateTime = v; t.textContent = fmt(v); t.title = utcText(v); return t; }
  return document.createTextNode(v == null ? "–" : String(v));
}

// -- login --------------------------------------------------------------------------------
async function start() {
  try { me = await getJSON("/auth/me"); } catch (e) { me = null; }
  $("login").hidden = !!me; $("nav").hidden = !me; $("logout").hidden = !me;
  $("who").textContent = me ? `${me.name} (${me.role}${me.sites.length ? ": " + me.sites.join(", ") : ""})` : "";
  if (me) {
    // The navigation offers only the views this role may use (the server derives them from its routes).
    for (const a of document.querySelectorAll("#nav a")) a.hidden = !me.views.includes(a.dataset.tab);
    sites = await getJSON("/sites").catch(() => []);
    setZone(siteZone(me.sites[0]));
    showTab(location.hash.slice(1) || defaultTab());
  }
}
function defaultTab() {
  const want = { security: "footage", auditor: "audit", dpo: "subjects", admin: "admin" }[me.role];
  return me.views.includes(want) ? want : me.views[0] || "";
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    // Read the answer to its end, so the request is finished rather than left open.
    await (await api("/auth/login", { method: "POST", body: new URLSearchParams(new FormData(ev.target)) })).json();
    say(""); ev.target.reset(); await start();
  } catch (e) { say(e.message); }
});
$("logout").addEventListener("click", async () => { await api("/auth/logout", { method: "POST" }).catch(() => {}); location.hash = ""; location.reload(); });

// -- tabs -----------------------------------------------------------------------------------
window.addEventListener("hashchange", () => me && showTab(location.hash.slice(1)));
// Each opening of a view takes the next number; a load started for an earlier one finds its number
// superseded when its answer arrives and then neither speaks in #msg nor changes what is shown, so
// the view the person is on now, and its message, stay as they are.
let tabGen = 0;
const superseded = (gen) => gen != null && gen !== tabGen;
/** Open a view; resolves to its number, still current (tabGen) if nothing else was opened meanwhile. */
async function showTab(hash) {
  const gen = ++tabGen;
  const [name, arg] = hash.split("/");
  const allowed = me.views.includes(name);
  for (const s of document.querySelectorAll(".tab")) { s.hidden = !allowed || s.id !== name; s.removeAttribute("aria-busy"); }
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.tab === name);
    if (a.dataset.tab === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  say("");
  if (name !== "footage") $("video").pause();
  if (!(name === "incidents" && arg)) closeIncidentView();
  if (!allowed) { say(`“${name}” is not a view the ${me.role} role can use`); return gen; }
  $(name).setAttribute("aria-busy", "true"); // until its data is shown
  try {
    if (name === "footage") await loadCameras(gen);
    if (name === "calls") await loadLines();
    if (name === "subjects") await loadSubjects();
    if (name === "incidents") { if (arg) await openIncidentView(+arg, gen); else await loadIncidents(); }
    if (name === "approvals") await loadApprovals();
    if (name === "audit") await loadAudit();
    if (name === "admin") await loadAdmin();
  } catch (e) { if (!superseded(gen)) say(e.message); }
  if (!superseded(gen)) $(name).removeAttribute("aria-busy");
  return gen;
}

// -- footage --------------------------------------------------------------------------------
// The timeline shows the searched range (view.start..view.end) through a window (vis) that
// zooms from the whole range down to a minute and pans; recorded segments green, gaps hatched
// with their reasons, an axis with ticks in the site's zone, one thumbnail per segment where
// there is room (fetched when shown, each fetch a logged view under the purpose typed).
const MIN_SPAN = 60e3;
const THUMB_W = 96;
const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400].map((s) => s * 1000);
let vis = null; // {a, b}: visible window, ms since epoch
let thumbs = new Map(); // `${purpose}|${segment id}` -> Promise of an object URL (this view only)

async function loadCameras(gen) {
  const cams = await getJSON("/cameras");
  if (superseded(gen)) return;
  const sel = $("camera"); const keep = sel.value; sel.replaceChildren();
  for (const c of cams) { const o = document.createElement("option"); o.value = c.id; o.dataset.site = c.site; o.textContent = `${c.id} (${c.site})`; sel.append(o); }
  if (keep) sel.value = keep;
  if (sel.selectedOptions[0]) setZone(siteZone(sel.selectedOptions[0].dataset.site));
  if (!view && sel.value) await openRecordings(gen);
}

/** Open the timeline on the range that holds recordings: the last hour of them (or all, if less). */
let rangeEdits = 0; // times the person typed in From or To: a range they typed is never replaced
async function openRecordings(gen) {
  const asked = searchGen, edits = rangeEdits;
  const x = await getJSON(`/extent?source=${encodeURIComponent($("camera").value)}`);
  if (superseded(gen) || searchGen !== asked || rangeEdits !== edits) return; // what the person did wins
  if (!x.last) { say(`${$("camera").value} has no recordings yet`); return; }
  const last = new Date(x.last), first = new Date(Math.max(new Date(x.first), last - 3600e3));
  $("from").value = fmt(first); $("to").value = fmt(last);
  await search(gen);
}

for (const f of ["from", "to"]) $(f).addEventListener("input", () => { rangeEdits++; });
$("camera").addEventListener("change", async () => {
  const o = $("camera").selectedOptions[0]; if (o) setZone(siteZone(o.dataset.site));
  try { await openRecordings(); } catch (e) { say(e.message); }
});

/** Show the typed range's timeline; `gen`: the view's opening this search belongs to, if any. */
let searchGen = 0; // the latest search's number: an earlier one answering later is dropped
async function search(gen) {
  const mine = ++searchGen;
  const cam = $("camera").value, s = isoOf($("from").value), e = isoOf($("to").value);
  const t = await getJSON(`/timeline?source=${encodeURIComponent(cam)}&start=${s}&end=${e}`);
  if (superseded(gen) || mine !== searchGen) return; // the person moved on, or searched again
  stopPlayer();
  for (const p of thumbs.values()) p.then((u) => u && URL.revokeObjectURL(u));
  thumbs = new Map();
  view = { camera: cam, site: $("camera").selectedOptions[0].dataset.site, start: new Date(t.start), end: new Date(t.end), segments: t.segments, gaps: t.gaps, cursor: new Date(t.start) };
  const firstRec = t.segments.length ? new Date(t.segments[0].start) : view.start;
  view.cursor = new Date(Math.max(view.start, firstRec));
  vis = { a: view.start.getTime(), b: view.end.getTime() };
  drawTimeline(); drawGapList(); incidentCameras();
  $("inc-from").value = fmt(view.start); $("inc-to").value = fmt(view.end);
  say(`${t.segments.length} segments, ${t.gaps.length} gaps`, true);
}
$("search-form").addEventListener("submit", async (ev) => { ev.preventDefault(); try { await search(); } catch (e) { say(e.message); } });

function frac(d) { return (asDate(d).getTime() - vis.a) / (vis.b - vis.a); }
function place(el, a, b, minPct = 0) {
  const l = Math.max(0, frac(a)), r = Math.min(1, frac(b));
  el.style.left = `${l * 100}%`; el.style.width = `${Math.max(minPct, (r - l) * 100)}%`;
  return r > 0 && l < 1;
}
function spanText(ms) { const s = Math.round(ms / 1000); return s >= 7200 ? `${(s / 3600).toFixed(1)} h` : s >= 120 ? `${Math.round(s / 60)} min` : `${s} s`; }

function drawTimeline() {
  if (!view) return;
  const bar = $("tl-bar"); bar.replaceChildren();
  for (const s of view.segments) {
    const b = document.createElement("div"); b.className = "seg";
    b.title = `${fmt(s.start)} – ${fmtTime(s.end)} ${zone} (UTC ${utcText(s.start)} – ${utcText(s.end)})`;
    if (place(b, s.start, s.end, 0.1)) bar.append(b);
  }
  const width = $("timeline").clientWidth || 1000;
  for (const g of view.gaps) {
    const b = document.createElement("div"); b.className = "gap";
    b.title = `gap ${fmt(g.start)} – ${fmtTime(g.end)} ${zone}: ${g.reason}`;
    if (!place(b, g.start, g.end)) continue;
    if ((Math.min(1, frac(g.end)) - Math.max(0, frac(g.start))) * width > 90) { const t = document.createElement("span"); t.textContent = g.reason; b.append(t); }
    bar.append(b);
  }
  drawAxis(width); drawThumbs(width); drawCursor(); drawSelection();
  $("tl-window").textContent = `${fmt(new Date(vis.a))} – ${fmt(new Date(vis.b))} (${spanText(vis.b - vis.a)})`;
  $("tl-window").title = `UTC ${utcText(new Date(vis.a))} – ${utcText(new Date(vis.b))}`;
}

function drawAxis(width) {
  const axis = $("tl-axis"); axis.replaceChildren();
  const span = vis.b - vis.a;
  const step = STEPS.find((s) => span / s <= Math.max(4, width / 110)) || STEPS[STEPS.length - 1];
  const off = zoneOffsetMs(new Date(vis.a), zone); // ticks on round times of the site's clock
  for (let t = Math.ceil((vis.a + off) / step) * step - off; t <= vis.b; t += step) {
    const d = new Date(t), k = document.createElement("div"); k.className = "tick"; k.style.left = `${frac(d) * 100}%`;
    const label = fmtTime(d); k.textContent = step < 60e3 ? label : label.slice(0, 5);
    if (fmtTime(d) === "00:00:00") k.textContent = fmt(d).slice(0, 10);
    k.title = utcText(d); axis.append(k);
  }
}

function drawThumbs(width) {
  const row = $("tl-thumbs"); row.replaceChildren();
  const purpose = $("purpose").value.trim();
  if (purpose.length < 3) { const n = document.createElement("span"); n.className = "hint"; n.textContent = "Thumbnails appear once you give the purpose of viewing (each is a logged view)"; row.append(n); return; }
  let lastX = -Infinity;
  for (const s of view.segments) {
    if (s.kind !== "video") continue;
    const x = frac(s.start) * width;
    if (x < -THUMB_W || x > width || x - lastX < THUMB_W) continue;
    lastX = x;
    const img = document.createElement("img"); img.className = "thumb"; img.alt = `frame at ${fmt(s.start)}`; img.dataset.segment = s.id;
    img.style.left = `${Math.max(0, x)}px`; img.title = `${fmt(s.start)} ${zone}`;
    const key = `${purpose}|${s.id}`;
    if (!thumbs.has(key)) {
      thumbs.set(key, api(`/segments/${encodeURIComponent(s.id)}/thumbnail?purpose=${encodeURIComponent(purpose)}`, { cache: "no-store" })
        .then(async (r) => URL.createObjectURL(await r.blob())).catch(() => null));
    }
    thumbs.get(key).then((u) => { if (u) img.src = u; else img.classList.add("missing"); });
    row.append(img);
  }
}
$("purpose").addEventListener("change", () => drawTimeline());

function drawCursor() {
  const c = $("cursor"); if (!view || !view.cursor) { c.hidden = true; return; }
  const f = frac(view.cursor); c.hidden = f < 0 || f > 1; c.style.left = `${f * 100}%`;
  $("timeline").setAttribute("aria-valuetext", `${fmt(view.cursor)} ${zone}`);
}

function drawGapList() {
  const ul = $("gaps"); ul.replaceChildren();
  for (const g of view.gaps) {
    const li = document.createElement("li"); li.className = "gap-item";
    li.textContent = `Gap ${fmt(g.start)} – ${fmtTime(g.end)} (${Math.round(g.duration)} s): ${g.reason}`; li.title = `${utcText(g.start)} – ${utcText(g.end)} (UTC)`; ul.append(li);
  }
}

// zoom and pan
function setWindow(a, b) {
  const lo = view.start.getTime(), hi = view.end.getTime();
  let span = Math.min(hi - lo, Math.max(MIN_SPAN, b - a));
  a = Math.min(Math.max(lo, a), hi - span);
  vis = { a, b: a + span }; drawTimeline();
}
function zoom(factor, at) { if (!view) return; const c = at ?? (view.cursor && frac(view.cursor) >= 0 && frac(view.cursor) <= 1 ? view.cursor.getTime() : (vis.a + vis.b) / 2); setWindow(c - (c - vis.a) * factor, c + (vis.b - c) * factor); }
function pan(f) { if (!view) return; const d = (vis.b - vis.a) * f; setWindow(vis.a + d, vis.b + d); }
$("tl-zoom-in").addEventListener("click", () => zoom(0.5));
$("tl-zoom-out").addEventListener("click", () => zoom(2));
$("tl-left").addEventListener("click", () => pan(-0.5));
$("tl-right").addEventListener("click", () => pan(0.5));
$("tl-all").addEventListener("click", () => view && setWindow(view.start.getTime(), view.end.getTime()));
window.addEventListener("resize", () => drawTimeline());
$("timeline").addEventListener("wheel", (ev) => {
  if (!view) return; ev.preventDefault();
  if (ev.shiftKey || Math.abs(ev.deltaX) > Math.abs(ev.deltaY)) { pan((ev.deltaX || ev.deltaY) > 0 ? 0.2 : -0.2); return; }
  zoom(ev.deltaY < 0 ? 0.8 : 1.25, wallAtX(ev.clientX).getTime());
}, { passive: false });

// click or drag on the bar/thumbnails: seek (scrub); drag on the axis: pan
function wallAtX(x) { const r = $("timeline").getBoundingClientRect(); return new Date(vis.a + (x - r.left) / r.width * (vis.b - vis.a)); }
let drag = null;
let selectMode = false;
const clampView = (d) => new Date(Math.min(view.end, Math.max(view.start, d)));
$("timeline").addEventListener("pointerdown", (ev) => {
  if (!view) return;
  $("timeline").setPointerCapture(ev.pointerId);
  if (ev.target.closest("#tl-axis")) drag = { pan: true, x: ev.clientX, a: vis.a, b: vis.b };
  else if (selectMode || ev.shiftKey) { const w = clampView(wallAtX(ev.clientX)); drag = { select: true }; view.sel = { a: w, b: w }; drawSelection(); }
  else { drag = { pan: false }; seekTo(wallAtX(ev.clientX)); }
});
$("timeline").addEventListener("pointermove", (ev) => {
  if (!drag) return;
  if (drag.pan) { const d = (drag.x - ev.clientX) / $("timeline").clientWidth * (drag.b - drag.a); setWindow(drag.a + d, drag.b + d); }
  else if (drag.select) { view.sel.b = clampView(wallAtX(ev.clientX)); drawSelection(); }
  else seekTo(wallAtX(ev.clientX));
});
$("timeline").addEventListener("pointerup", () => { if (drag && drag.select) finishSelection(); drag = null; });

// A range selected on the timeline becomes the incident form's range (the site's cameras below it).
function drawSelection() {
  const el = $("tl-sel"); const s = view && view.sel;
  if (!s) { el.hidden = true; return; }
  const a = new Date(Math.min(s.a, s.b)), b = new Date(Math.max(s.a, s.b));
  el.hidden = !place(el, a, b, 0.2);
  el.title = `selected ${fmt(a)} – ${fmtTime(b)} ${zone}`;
}
function finishSelection() {
  const s = view.sel; const a = new Date(Math.min(s.a, s.b)), b = new Date(Math.max(s.a, s.b));
  if (b - a < 1000) { view.sel = null; drawSelection(); return; }
  view.sel = { a, b }; drawSelection();
  $("inc-from").value = fmt(a); $("inc-to").value = fmt(b);
  say(`Selected ${fmt(a)} – ${fmtTime(b)} (${spanText(b - a)}): tick the cameras and describe it below to open an incident`, true);
}
$("tl-select").addEventListener("click", () => { selectMode = !selectMode; $("tl-select").setAttribute("aria-pressed", String(selectMode)); });

/** The incident form's cameras: those of the shown camera's site, the shown one ticked. */
function incidentCameras() {
  const box = $("inc-cameras"); const keep = new Set(checked(box));
  box.querySelectorAll("label").forEach((l) => l.remove());
  for (const o of $("camera").options) {
    if (o.dataset.site !== view.site) continue;
    const l = document.createElement("label"); l.className = "check";
    const c = document.createElement("input"); c.type = "checkbox"; c.value = o.value; c.checked = o.value === view.camera || keep.has(o.value);
    l.append(c, ` ${o.value}`); box.append(l);
  }
}

// Media time ↔ wall clock: the playlist concatenates the video segments (gaps removed), in order.
function wallAt(t) {
  let acc = 0;
  for (const s of view.played) { if (t < acc + s.duration) return new Date(new Date(s.start).getTime() + (t - acc) * 1000); acc += s.duration; }
  return null;
}
function mediaAt(wall) {
  let acc = 0;
  for (const s of view.played) {
    const a = new Date(s.start), b = new Date(s.end);
    if (wall < a) return acc; // in a gap: jump to the next recorded moment
    if (wall < b) return acc + (wall - a) / 1000;
    acc += s.duration;
  }
  return acc;
}

/** Move the play position to a wall-clock moment (the next recorded one, in a gap). */
function seekTo(wall) {
  if (!view) return;
  wall = new Date(Math.min(view.end, Math.max(view.start, wall)));
  if (view.playing) { $("video").currentTime = mediaAt(wall); view.cursor = wallAt($("video").currentTime) || wall; } else view.cursor = wall;
  const f = frac(view.cursor);
  if (f < 0 || f > 1) { const span = vis.b - vis.a; setWindow(view.cursor - span / 2, view.cursor.getTime() + span / 2); } else drawCursor();
  showClock(view.cursor);
}
function showClock(w) { $("clock").textContent = w ? fmt(w) : "-"; $("clock").title = w ? `UTC ${utcText(w)}` : ""; }

async function startPlaying() {
  if (!view) { say("Find footage first"); return false; }
  const purpose = $("purpose").value.trim();
  if (purpose.length < 3) { say("State the purpose of viewing first (an incident:ID or a reason)"); $("purpose").focus(); return false; }
  if (!(await approvedFor("view", [view.camera], view.start, view.end, purpose))) return false;
  const url = `/api/v1/cameras/${encodeURIComponent(view.camera)}/playlist.m3u8?start=${view.start.toISOString()}&end=${view.end.toISOString()}&purpose=${encodeURIComponent(purpose)}`;
  view.played = view.segments.filter((s) => s.kind === "video");
  view.playing = true; view.purpose = purpose;
  const from = view.cursor;
  playUrl(url);
  const v = $("video");
  if (from > view.start) v.addEventListener("loadedmetadata", () => { v.currentTime = mediaAt(from); }, { once: true });
  watermark();
  say(`Playing ${view.camera}; this view is logged with purpose “${purpose}”`, true);
  drawTimeline();
  return true;
}
$("play-form").addEventListener("submit", (ev) => { ev.preventDefault(); startPlaying().catch((e) => say(e.message)); });

// HLS: the browser's own player where it has one, else hls.js (vendored, MediaSource).
let hls = null;
function stopPlayer() {
  const v = $("video");
  if (hls) { hls.destroy(); hls = null; }
  v.pause(); v.removeAttribute("src"); v.load();
  if (view) view.playing = false;
  $("watermark").hidden = true;
}
function playUrl(url) {
  const v = $("video");
  if (hls) { hls.destroy(); hls = null; }
  if (!v.canPlayType("application/vnd.apple.mpegurl") && window.Hls && window.Hls.isSupported()) {
    hls = new window.Hls({ enableWorker: false });
    hls.on(window.Hls.Events.ERROR, (_, d) => { if (d.fatal) say(`Player could not load the footage (${d.details}): check the purpose and your access`); });
    hls.loadSource(url); hls.attachMedia(v); v.dataset.player = "hls.js";
  } else { v.src = url; v.dataset.player = "native"; }
  v.play().catch(() => {});
}

// The watermark over the player: who is watching, why and when (a deterrent against filming the screen).
function watermark() {
  const w = $("watermark");
  if (!view || !view.playing) { w.hidden = true; return; }
  const text = `${me.name} · ${view.purpose} · ${fmt(new Date())} ${zone}`;
  if (w.dataset.text !== text) {
    w.dataset.text = text; w.replaceChildren();
    for (let i = 0; i < 4; i++) { const line = document.createElement("div"); line.textContent = text; w.append(line); }
  }
  w.hidden = false;
}
setInterval(watermark, 1000);

$("video").addEventListener("timeupdate", () => {
  if (!view || !view.playing || drag) return;
  const w = wallAt($("video").currentTime);
  if (!w) return;
  view.cursor = w; showClock(w);
  const f = frac(w);
  if (f > 1 || f < 0) { const span = vis.b - vis.a; setWindow(w.getTime() - span * 0.1, w.getTime() + span * 0.9); } else drawCursor();
});
$("video").addEventListener("error", () => { const e = $("video").error; if (view && view.playing) say(`Player could not load the footage (${e ? e.message || "error " + e.code : "error"}): check the purpose and your access`); });

// Keyboard on the footage page: space play/pause, ←/→ 10 s, [ ] previous/next segment, + − zoom.
document.addEventListener("keydown", (ev) => {
  if ($("footage").hidden || !view || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.target.closest("input, select, textarea, button, a, video")) return;
  const v = $("video");
  const starts = view.segments.map((s) => new Date(s.start).getTime());
  const now = view.cursor ? view.cursor.getTime() : view.start.getTime();
  switch (ev.key) {
    case " ":
      if (!view.playing) startPlaying().catch((e) => say(e.message)); else if (v.paused) v.play().catch(() => {}); else v.pause();
      break;
    case "ArrowLeft": seekTo(new Date(now - 10e3)); break;
    case "ArrowRight": seekTo(new Date(now + 10e3)); break;
    case "[": { const prev = starts.filter((t) => t < now - 1000).pop(); seekTo(new Date(prev ?? starts[0] ?? now)); break; }
    case "]": { const next = starts.find((t) => t > now + 1); if (next !== undefined) seekTo(new Date(next)); break; }
    case "+": case "=": zoom(0.5); break;
    case "-": zoom(2); break;
    default: return;
  }
  ev.preventDefault();
});

$("incident-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if (!view) { say("Find footage first: the incident covers the camera and range shown"); return; }
  try {
    const cams = checked($("inc-cameras"));
    if (!cams.length) { say("Tick at least one camera for the incident"); return; }
    const inc = await postJSON("/incidents", { site: view.site, cameras: cams, start: isoOf($("inc-from").value), end: isoOf($("inc-to").value), description: $("description").value });
    $("purpose").value = `incident:${inc.id}`;
    history.pushState(null, "", `#incidents/${inc.id}`); // no hashchange: the message below stays
    if (!superseded(await showTab(`incidents/${inc.id}`))) say(`Incident ${inc.id} opened; its footage is on legal hold`, true);
  } catch (e) { say(e.message); }
});

// -- calls ----------------------------------------------------------------------------------
async function loadLines() {
  const lines = await getJSON("/lines");
  const sel = $("line"); const keep = sel.value; sel.replaceChildren();
  for (const l of lines) { const o = document.createElement("option"); o.value = l.id; o.textContent = `${l.id} (${l.site})`; sel.append(o); }
  if (keep) sel.value = keep;
  if (!$("call-from").value) { const now = new Date(); $("call-to").value = localOf(now); $("call-from").value = localOf(new Date(now - 86400e3)); }
}

$("call-search").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const q = new URLSearchParams({ source: $("line").value, start: isoOf($("call-from").value), end: isoOf($("call-to").value) });
    for (const [k, id] of [["agent", "call-agent"], ["direction", "call-direction"], ["remote", "call-remote"]]) { const v = $(id).value.trim(); if (v) q.set(k, v); }
    const rows = await getJSON(`/segments?${q}`); const tb = $("call-rows"); tb.replaceChildren();
    for (const s of rows) {
      const c = s.call || {}; const tr = document.createElement("tr"); tr.className = "call-row";
      tr.append(timeTd(c.call_start || s.start), td(`${Math.round(s.duration)} s`), td(c.agent), td(c.direction),
        td(c.remote ?? (c.remote_hash ? "(hashed)" : "")), td(`${c.call_id || ""}${c.part ? ` part ${c.part + 1}` : ""}`),
        td(pausesText(c.pauses)));
      const act = document.createElement("td"); const b = document.createElement("button"); b.textContent = "Play"; b.className = "play-call";
      b.addEventListener("click", () => playCall(s)); act.append(b); tr.append(act); tb.append(tr);
    }
    say(`${rows.length} calls`, true);
  } catch (e) { say(e.message); }
});

// Where the recording was paused (card numbers, health details): that audio was never kept.
function pausesText(pauses) {
  if (!pauses || !pauses.length) return "";
  return pauses.map((p) => `paused at ${Math.floor(p.offset / 60)}:${String(Math.floor(p.offset % 60)).padStart(2, "0")}` +
    (p.seconds != null ? ` for ${Math.round(p.seconds)} s` : "")).join("; ");
}

async function playCall(seg) {
  const purpose = $("call-purpose").value.trim();
  if (purpose.length < 3) { say("State the purpose of listening first"); $("call-purpose").focus(); return; }
  try {
    const v = await postJSON(`/segments/${encodeURIComponent(seg.id)}/views`, { purpose });
    const a = $("call-audio"); const src = document.createElement("source");
    src.src = v.url; src.type = v.mime; a.replaceChildren(src); a.load(); a.play().catch(() => {});
    $("call-pauses").textContent = pausesText(seg.call?.pauses) ? `Not recorded: ${pausesText(seg.call.pauses)}` : "";
    say(`Playing call ${seg.call?.call_id || seg.id}; this view is logged with purpose “${purpose}”`, true);
  } catch (e) { say(e.message); }
}
$("call-audio").addEventListener("error", () => say("Player could not load the call"), true);

// -- subject access requests (DPO) -----------------------------------------------------------
async function loadSubjects() {
  if (!$("sar-from").value) { const now = new Date(); $("sar-to").value = localOf(now); $("sar-from").value = localOf(new Date(now - 3600e3)); }
  const rows = await getJSON("/subject-requests"); const tb = $("sar-rows"); tb.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    tr.append(td(r.id), td(r.subject), td(r.identity_verified ? `verified: ${r.identity_note}` : "NOT verified"), td(r.sources.join(", ")),
      rangeTd(r.start, r.end), (() => { const c = timeTd(r.deadline); if (r.overdue) c.textContent += " (OVERDUE)"; return c; })(), td(r.state + (r.close_reason ? `: ${r.close_reason}` : "")), exportsTd(r.exports));
    const act = document.createElement("td");
    if (r.state === "open" && !r.identity_verified) {
      const b = document.createElement("button"); b.textContent = "Identity verified…";
      b.addEventListener("click", async () => { const note = prompt("How was the identity verified?"); if (!note) return;
        try { await postJSON(`/subject-requests/${r.id}/identity`, { note }); await loadSubjects(); } catch (e) { say(e.message); } });
      act.append(b);
    }
    if (r.state === "open") {
      const b = document.createElement("button"); b.textContent = "Answered: release hold";
      b.addEventListener("click", async () => { const reason = prompt("How was the request answered?"); if (!reason) return;
        try { await postJSON(`/subject-requests/${r.id}/close`, { reason }); await loadSubjects(); say(`Request ${r.id} answered; hold released`, true); } catch (e) { say(e.message); } });
      act.append(b);
    }
    tr.append(act); tb.append(tr);
  }
}

/** What was exported for a request: when (site's zone, UTC on hover), by whom, which sources and range. */
function exportsTd(exports) {
  const c = document.createElement("td");
  if (!exports.length) { c.textContent = "none yet"; return c; }
  const ol = document.createElement("ol"); ol.className = "exports";
  for (const x of exports) {
    const li = document.createElement("li"); const t = document.createElement("time");
    t.dateTime = x.at; t.textContent = fmt(x.at); t.title = utcText(x.at);
    li.append(t, ` by ${x.by} (blur ${x.blur}): ${x.sources.join(", ")}, ${fmt(x.start)} – ${fmtTime(x.end)}`);
    ol.append(li);
  }
  c.append(ol); return c;
}

$("sar-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const r = await postJSON("/subject-requests", { subject: $("sar-subject").value, identity_verified: $("sar-verified").checked,
      identity_note: $("sar-note").value, sources: $("sar-sources").value.split(",").map((x) => x.trim()).filter(Boolean),
      start: isoOf($("sar-from").value), end: isoOf($("sar-to").value) });
    $("sar-id").value = r.id; say(`Subject request ${r.id} opened; its footage is on legal hold; answer by ${fmt(r.deadline)} ${zone}`, true); await loadSubjects();
  } catch (e) { say(e.message); }
});

$("sar-export").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const id = $("sar-id").value; const body = { blur: $("sar-blur").value };
  const rect = $("sar-rect").value.trim();
  if (rect) { const [x, y, w, h] = rect.split(",").map(Number); body.subject_rect = { x, y, w, h }; }
  say(`Building the redacted export for request ${id} (every frame is decoded and blurred: this takes a while)…`, true);
  try {
    const r = await api(`/subject-requests/${id}/export`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const name = (r.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/)?.[1] || `subject-request-${id}.zip`;
    const url = URL.createObjectURL(await r.blob());
    const a = document.createElement("a"); a.href = url; a.download = name; document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    say(`Export ${name} downloaded; verify it with: holdfast verify-export ${name} --pubkey sign.pub`, true); await loadSubjects();
  } catch (e) { say(e.message); }
});

// -- incidents ------------------------------------------------------------------------------
async function loadIncidents() {
  const rows = await getJSON("/incidents"); const tb = $("incident-rows"); tb.replaceChildren();
  for (const i of rows) {
    const tr = document.createElement("tr");
    tr.append(td(i.id), td(i.site), td(i.cameras.join(", ")), rangeTd(i.start, i.end), td(i.description), td(i.state + (i.close_reason ? `: ${i.close_reason}` : "")));
    const act = document.createElement("td");
    const open = document.createElement("a"); open.href = `#incidents/${i.id}`; open.className = "open-incident"; open.textContent = "View";
    open.setAttribute("aria-label", `View incident ${i.id}`); act.append(open, " ");
    if (me.role === "security") {
      const b = document.createElement("button"); b.textContent = "Export evidence"; b.className = "export"; b.dataset.id = i.id;
      b.addEventListener("click", () => exportIncident(i.id, b)); act.append(b);
    }
    if (me.role === "dpo" && i.state === "open") {
      const b = document.createElement("button"); b.textContent = "Close and release hold";
      b.addEventListener("click", async () => {
        const reason = prompt("Reason for releasing the legal hold"); if (!reason) return;
        try { await postJSON(`/incidents/${i.id}/close`, { reason }); await loadIncidents(); say(`Incident ${i.id} closed`, true); } catch (e) { say(e.message); }
      });
      act.append(b);
    }
    tr.append(act); tb.append(tr);
  }
}

// -- incident view: the incident's cameras side by side on one wall clock ---------------------
// One shared clock (wall time, advancing with performance.now() while playing). Each player is
// placed at the clock's instant through its own segment list (media time = its video segments
// back to back, gaps removed: how the playlist plays), and drift is corrected every SYNC_MS:
// small drift by nudging playbackRate, large drift by seeking. A camera with nothing recorded at
// the instant pauses and says why; while a player that should play is still loading, the clock
// and the others wait for it.
let incView = null; // {incident, start, end, players: [{camera, video, played, gaps, hls, note}], clock, timer}
const SYNC_MS = 250, SEEK_DRIFT = 0.3;

function closeIncidentView() {
  if (incView) {
    clearInterval(incView.timer);
    for (const p of incView.players) { if (p.hls) p.hls.destroy(); p.video.pause(); p.video.removeAttribute("src"); p.video.load(); }
    incView = null;
  }
  $("incident-view").hidden = true; $("incident-list").hidden = false;
}

/** Where `wall` (ms) falls in a camera's played segments: media time, and whether it was recorded. */
function mediaPos(played, wall) {
  let acc = 0;
  for (const s of played) {
    if (wall < s.a) return { t: acc, inside: false };
    if (wall < s.b) return { t: acc + Math.min(s.d, (wall - s.a) / 1000), inside: true };
    acc += s.d;
  }
  return { t: acc, inside: false };
}
const clockNow = (c) => (c.playing ? c.wall + (performance.now() - c.perf) : c.wall);
function clockSet(c, wall) { c.wall = wall; c.perf = performance.now(); }

function attachPlayer(video, url) {
  if (!video.canPlayType("application/vnd.apple.mpegurl") && window.Hls && window.Hls.isSupported()) {
    const h = new window.Hls({ enableWorker: false });
    h.on(window.Hls.Events.ERROR, (_, d) => { if (d.fatal) say(`Player could not load the footage (${d.details}): check your access`); });
    h.loadSource(url); h.attachMedia(video); video.dataset.player = "hls.js"; return h;
  }
  video.src = url; video.dataset.player = "native"; return null;
}

function renderIncident(i) {
  const cams = i.cameras.join(", ");
  $("inc-title").textContent = `Incident ${i.id}: ${i.description}`;
  $("inc-summary").textContent = `Site ${i.site} · cameras ${cams} · ${fmt(i.start)} – ${fmt(i.end)} ${zone} · opened by ${i.opened_by} at ${fmt(i.opened_at)} · ${i.state}`;
  $("inc-summary").title = `UTC ${utcText(i.start)} – ${utcText(i.end)}`;
  const hold = $("inc-hold");
  if (i.state === "open") {
    hold.textContent = `Legal hold ${i.hold_id || "–"} in force: the footage of ${cams} from ${fmt(i.start)} to ${fmt(i.end)} is kept past its retention deadline until the data protection officer closes this incident.`;
    hold.className = "hold active";
  } else {
    hold.textContent = `Legal hold ${i.hold_id || "–"} released by ${i.closed_by} at ${fmt(i.closed_at)}: ${i.close_reason}. The footage is purged at its retention deadline again.`;
    hold.className = "hold released";
  }
  const ol = $("inc-notes"); ol.replaceChildren();
  for (const n of i.notes) {
    const li = document.createElement("li"); const t = document.createElement("time");
    t.dateTime = n.at; t.textContent = fmt(n.at); t.title = utcText(n.at);
    li.append(t, ` ${n.by}: ${n.text}`); ol.append(li);
  }
  if (!i.notes.length) { const li = document.createElement("li"); li.className = "hint"; li.textContent = "No notes yet"; ol.append(li); }
}

async function openIncidentView(id, gen) {
  closeIncidentView();
  const i = await getJSON(`/incidents/${id}`);
  if (superseded(gen)) return;
  setZone(siteZone(i.site));
  $("incident-list").hidden = true; $("incident-view").hidden = false;
  renderIncident(i);
  const v = { incident: i, start: new Date(i.start), end: new Date(i.end), players: [], clock: { wall: Date.parse(i.start), perf: 0, playing: false } };
  incView = v;
  const holder = $("inc-players"); holder.replaceChildren();
  if (!me.views.includes("footage")) {
    const p = document.createElement("p"); p.className = "hint";
    p.textContent = "The footage plays for the site's security staff; this view shows the incident's record, notes and hold."; holder.append(p);
    $("inc-controls").hidden = true; return;
  }
  $("inc-controls").hidden = false;
  const purpose = `incident:${i.id}`;
  for (const cam of i.cameras) {
    const t = await getJSON(`/timeline?source=${enc(cam)}&start=${i.start}&end=${i.end}`);
    if (incView !== v) return; // left the view meanwhile
    const fig = document.createElement("figure"); fig.className = "cam"; fig.dataset.camera = cam;
    const cap = document.createElement("figcaption"); cap.textContent = cam;
    const stage = document.createElement("div"); stage.className = "stage";
    const video = document.createElement("video"); video.muted = true; video.playsInline = true; video.preload = "auto";
    video.dataset.camera = cam; video.setAttribute("aria-label", `camera ${cam}`);
    const mark = document.createElement("div"); mark.className = "watermark"; mark.setAttribute("aria-hidden", "true");
    const note = document.createElement("div"); note.className = "gapnote"; note.hidden = true;
    stage.append(video, mark, note); fig.append(cap, stage); holder.append(fig);
    const played = t.segments.filter((s) => s.kind === "video").map((s) => ({ a: Date.parse(s.start), b: Date.parse(s.end), d: s.duration }));
    const url = `/api/v1/cameras/${enc(cam)}/playlist.m3u8?start=${i.start}&end=${i.end}&purpose=${enc(purpose)}`;
    v.players.push({ camera: cam, video, played, gaps: t.gaps, note, mark, hls: attachPlayer(video, url) });
  }
  const first = Math.min(...v.players.map((p) => (p.played[0] ? p.played[0].a : Infinity)));
  clockSet(v.clock, Math.max(v.start.getTime(), Number.isFinite(first) ? first : v.start.getTime()));
  $("inc-seek").max = String((v.end - v.start) / 1000);
  v.purpose = purpose;
  v.timer = setInterval(syncTick, SYNC_MS);
  playLabel(); syncTick();
}

function playLabel() { if (incView) $("inc-play").textContent = incView.clock.playing ? "Pause" : "Play"; }

function syncTick() {
  const v = incView; if (!v) return;
  const c = v.clock;
  let w = clockNow(c);
  if (w >= v.end.getTime()) { w = v.end.getTime(); c.playing = false; clockSet(c, w); playLabel(); }
  let stalled = false;
  const pos = v.players.map((p) => {
    const m = mediaPos(p.played, w);
    if (m.inside && p.video.readyState >= 1) {
      const drift = p.video.currentTime - m.t;
      if (Math.abs(drift) > SEEK_DRIFT) { p.video.currentTime = m.t; p.video.playbackRate = 1; }
      else p.video.playbackRate = Math.min(1.1, Math.max(0.9, 1 - drift));
    }
    if (c.playing && m.inside && !p.video.ended && (p.video.readyState < 3 || p.video.seeking)) stalled = true;
    return m;
  });
  if (stalled) { w = v.lastWall ?? w; clockSet(c, w); } // the clock waits for the player still loading
  v.lastWall = w;
  const mark = `${me.name} · ${v.purpose} · ${fmt(new Date())} ${zone}`;
  v.players.forEach((p, k) => {
    const m = pos[k];
    if (c.playing && !stalled && m.inside) { if (p.video.paused) p.video.play().catch(() => {}); } else if (!p.video.paused) p.video.pause();
    p.note.hidden = m.inside;
    if (!m.inside) { const g = p.gaps.find((x) => Date.parse(x.start) <= w && w < Date.parse(x.end)); p.note.textContent = `No recording at this moment${g ? `: ${g.reason}` : ""}`; }
    if (p.mark.dataset.text !== mark) { p.mark.dataset.text = mark; p.mark.replaceChildren(...[0, 1, 2].map(() => { const d = document.createElement("div"); d.textContent = mark; return d; })); }
  });
  const at = new Date(w);
  $("inc-clock").textContent = fmt(at); $("inc-clock").title = `UTC ${utcText(at)}`;
  if (document.activeElement !== $("inc-seek")) $("inc-seek").value = String((w - v.start) / 1000);
  $("inc-seek").setAttribute("aria-valuetext", `${fmt(at)} ${zone}`);
}

$("inc-play").addEventListener("click", () => {
  const v = incView; if (!v) return;
  if (!v.clock.playing && clockNow(v.clock) >= v.end.getTime()) clockSet(v.clock, v.start.getTime());
  clockSet(v.clock, clockNow(v.clock)); v.clock.playing = !v.clock.playing; v.lastWall = v.clock.wall;
  playLabel(); syncTick();
});
$("inc-seek").addEventListener("input", () => {
  const v = incView; if (!v) return;
  clockSet(v.clock, v.start.getTime() + Number($("inc-seek").value) * 1000); v.lastWall = v.clock.wall; syncTick();
});
$("inc-note-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const v = incView; if (!v) return;
  try {
    const i = await postJSON(`/incidents/${v.incident.id}/notes`, { text: $("inc-note").value });
    v.incident = i; renderIncident(i); $("inc-note").value = ""; say("Note added", true);
  } catch (e) { say(e.message); }
});


async function exportIncident(id, button) {
  button.disabled = true; say(`Building the export for incident ${id}…`, true);
  try {
    const r = await api(`/incidents/${id}/export`, { method: "POST" });
    const name = (r.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/)?.[1] || `incident-${id}.zip`;
    const url = URL.createObjectURL(await r.blob());
    const a = document.createElement("a"); a.href = url; a.download = name; document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    say(`Export ${name} downloaded; verify it with: holdfast verify-export ${name} --pubkey sign.pub`, true);
  } catch (e) { say(e.message); } finally { button.disabled = false; }
}

// -- audit ----------------------------------------------------------------------------------
const PAGE = 50;
let accessOffset = 0;
function logQuery(prefix, keys) {
  const q = new URLSearchParams({ limit: PAGE });
  for (const k of keys) {
    const v = $(`${prefix}-${k}`).value.trim(); if (!v) continue;
    q.set(k, k === "since" || k === "until" ? isoOf(v) : v);
  }
  return q;
}
async function loadAudit() {
  await loadReport();
  await loadPurge();
  await loadAccess();
  await verifyLogs();
}
async function loadReport() {
  const r = await getJSON("/audit/compliance");
  const overdue = Object.values(r.classes).reduce((a, c) => a + c.overdue, 0);
  $("report-summary").textContent = overdue === 0 ? `No footage has outlived its deadline without a legal hold (report of ${fmt(r.generated_at)} ${zone}).` : `${overdue} segment(s) are past their deadline without a hold.`;
  $("report-summary").className = overdue === 0 ? "verified" : "failed";
  const cr = $("class-rows"); cr.replaceChildren();
  for (const [name, c] of Object.entries(r.classes)) {
    const tr = document.createElement("tr"), age = c.oldest_unheld_age_days;
    const ageTd = td(age == null ? "–" : `${age.toFixed(1)} days`);
    if (age != null && c.limit_days != null) ageTd.className = age <= c.limit_days ? "ok" : "failed";
    const od = td(c.overdue); od.className = c.overdue === 0 ? "ok" : "failed";
    tr.append(td(name), td(c.purpose), td(c.limit), ageTd, td(c.segments), td(c.held), od); cr.append(tr);
  }
  const hr = $("hold-rows"); hr.replaceChildren();
  for (const h of r.holds) { const tr = document.createElement("tr"); tr.append(td(h.reason), td(h.created_by), timeTd(h.created_at), td((h.sources || []).join(", ")), rangeTd(h.from, h.to), td(h.segments_held)); hr.append(tr); }
  if (!r.holds.length) { const tr = document.createElement("tr"); const c = td("No active hold"); c.colSpan = 6; tr.append(c); hr.append(tr); }
  const chart = $("purge-chart"); chart.replaceChildren();
  const top = Math.max(1, ...Object.values(r.purges));
  for (const [reason, n] of Object.entries(r.purges)) {
    const row = document.createElement("div"); row.className = "bar-row";
    const label = document.createElement("span"); label.textContent = reason;
    const bar = document.createElement("span"); bar.className = `bar ${reason}`; bar.style.width = `${(n / top) * 60}%`;
    const num = document.createElement("span"); num.textContent = n;
    row.append(label, bar, num); chart.append(row);
  }
}
async function loadPurge() {
  const q = logQuery("purge", ["segment", "since", "until"]); q.set("offset", purgeOffset);
  const p = await getJSON(`/audit/purge-log?${q}`); const tb = $("purge-rows"); tb.replaceChildren();
  $("checkpoint").replaceChildren(p.checkpoint ? dataView(p.checkpoint) : "No checkpoint yet (nothing purged)");
  for (const e of p.entries) { const tr = document.createElement("tr"); tr.append(td(e.seq), timeTd(e.purged_at), td(e.segment), td(e.source), rangeTd(e.start, e.end), timeTd(e.deadline), td(e.reason)); tb.append(tr); }
  $("purge-page").textContent = `${p.entries.length ? purgeOffset + 1 : 0}–${purgeOffset + p.entries.length} of ${p.total}`;
}
async function loadAccess() {
  const q = logQuery("access", ["segment", "user", "since", "until"]); q.set("offset", accessOffset);
  const acc = await getJSON(`/audit/access-log?${q}`); const tb = $("access-rows"); tb.replaceChildren();
  for (const e of acc.entries) {
    const tr = document.createElement("tr");
    tr.append(td(e.seq), timeTd(e.time), td(`${e.user} (${e.role})`), td(e.action), td(e.purpose), td(e.source), rangeTd(e.start, e.end), td(e.result));
    tb.append(tr);
  }
  $("access-page").textContent = `${acc.entries.length ? accessOffset + 1 : 0}–${accessOffset + acc.entries.length} of ${acc.total}`;
}
$("purge-search").addEventListener("submit", async (ev) => { ev.preventDefault(); purgeOffset = 0; await loadPurge().catch((e) => say(e.message)); });
$("access-search").addEventListener("submit", async (ev) => { ev.preventDefault(); accessOffset = 0; await loadAccess().catch((e) => say(e.message)); });
$("purge-prev").addEventListener("click", async () => { purgeOffset = Math.max(0, purgeOffset - PAGE); await loadPurge().catch((e) => say(e.message)); });
$("purge-next").addEventListener("click", async () => { purgeOffset += PAGE; await loadPurge().catch((e) => say(e.message)); });
$("access-prev").addEventListener("click", async () => { accessOffset = Math.max(0, accessOffset - PAGE); await loadAccess().catch((e) => say(e.message)); });
$("access-next").addEventListener("click", async () => { accessOffset += PAGE; await loadAccess().catch((e) => say(e.message)); });
async function verifyLogs() {
  const out = $("verify-result");
  try {
    const res = await getJSON("/audit/verify");
    const bad = res.filter((r) => !r.ok);
    out.textContent = bad.length ? `FAILED: ${bad.map((r) => `${r.log} log: ${r.summary}`).join("; ")}` : `Verified: ${res.map((r) => `${r.log} log (${r.entries} entries, ${r.checkpoints} checkpoints)`).join(", ")}`;
    out.className = bad.length ? "failed" : "verified";
  } catch (e) { out.textContent = e.message; out.className = "failed"; }
}
$("verify").addEventListener("click", verifyLogs);

// In-browser verification: RFC 6962 Merkle roots and Ed25519 checkpoint signatures (WebCrypto),
// against the auditor's own copy of the public key; nothing here trusts the server's verdict.
const te = new TextEncoder();
const hexOf = (b) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
const b64Bytes = (t) => Uint8Array.from(atob(t), (c) => c.charCodeAt(0));
const b64Of = (b) => btoa(String.fromCharCode(...b));
function cat(...parts) { const n = parts.reduce((a, p) => a + p.length, 0); const o = new Uint8Array(n); let i = 0; for (const p of parts) { o.set(p, i); i += p.length; } return o; }
const sha256 = async (b) => new Uint8Array(await crypto.subtle.digest("SHA-256", b));
const leafHashOf = (text) => sha256(cat([0], te.encode(text)));
const nodeHashOf = (l, r) => sha256(cat([1], l, r));
async function stackRoot(stack) { if (!stack.length) return sha256(new Uint8Array()); let r = stack[stack.length - 1]; for (let i = stack.length - 2; i >= 0; i--) r = await nodeHashOf(stack[i], r); return r; }

async function importPublicKey(pem) {
  const body = pem.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, "").replace(/\s+/g, "");
  let der; try { der = b64Bytes(body); } catch (e) { throw new Error("the public key is not PEM (-----BEGIN PUBLIC KEY-----)"); }
  const key = await crypto.subtle.importKey("spki", der, { name: "Ed25519" }, true, ["verify"]);
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", key));
  return { key, id: hexOf((await sha256(raw)).slice(0, 8)) };
}

/** Verify one exported log; returns {entries, checkpoints, signedSize}; throws naming the first problem. */
async function verifyLogHere(name, pub, progress) {
  const x = await getJSON(`/audit/logs/${name}`);
  const bySize = new Map();
  for (const c of x.checkpoints) { if (!bySize.has(c.size)) bySize.set(c.size, []); bySize.get(c.size).push(c); }
  let checked = 0, signedSize = 0;
  async function checkAt(size, stack) {
    for (const c of bySize.get(size) || []) {
      if (c.origin !== x.origin) throw new Error(`${name} log: checkpoint at size ${size} names origin “${c.origin}”, not “${x.origin}”`);
      if (c.key_id !== pub.id) throw new Error(`${name} log: checkpoint at size ${size} is signed by key ${c.key_id}, not by the key you gave (${pub.id})`);
      const root = await stackRoot(stack);
      if (b64Of(root) !== c.root) throw new Error(`${name} log: the entries do not match the signed root at size ${size}: an entry before it was changed, removed or reordered`);
      const body = te.encode(`${c.origin}\n${c.size}\n${c.root}\n${c.time}\n`);
      if (!(await crypto.subtle.verify({ name: "Ed25519" }, pub.key, b64Bytes(c.signature), body))) throw new Error(`${name} log: the signature of the checkpoint at size ${size} (${fmt(c.time)}) is not valid for your key`);
      checked += 1; signedSize = Math.max(signedSize, size);
    }
  }
  const stack = []; let prev = "00".repeat(32);
  await checkAt(0, stack);
  for (let i = 0; i < x.entries.length; i++) {
    let e; try { e = JSON.parse(x.entries[i]); } catch (err) { throw new Error(`${name} log: entry ${i} is not JSON`); }
    if (e.seq !== i) throw new Error(`${name} log: entry ${i} says seq ${e.seq}: entries were removed, inserted or reordered`);
    if (e.prev !== prev) throw new Error(`${name} log: entry ${i} does not chain to entry ${i - 1} (prev hash differs)`);
    let h = await leafHashOf(x.entries[i]); prev = hexOf(h);
    for (let n = i; n & 1; n >>= 1) h = await nodeHashOf(stack.pop(), h);
    stack.push(h);
    await checkAt(i + 1, stack);
    if (i % 200 === 0) progress(i + 1, x.entries.length);
  }
  progress(x.entries.length, x.entries.length);
  if (signedSize !== x.entries.length) throw new Error(`${name} log: only the first ${signedSize} of ${x.entries.length} entries are covered by a signed checkpoint`);
  return { entries: x.entries.length, checkpoints: checked, signedSize };
}

$("pubkey-file").addEventListener("change", async (ev) => { const f = ev.target.files[0]; if (f) $("pubkey").value = await f.text(); });
$("browser-verify-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const out = $("browser-verify"), bar = $("browser-verify-progress");
  out.className = ""; out.textContent = "Verifying…"; bar.value = 0;
  try {
    const pub = await importPublicKey($("pubkey").value);
    const done = [];
    for (const [k, name] of [[0, "purge"], [1, "access"]]) {
      const r = await verifyLogHere(name, pub, (i, n) => { bar.value = (k + (n ? i / n : 1)) / 2; out.textContent = `Verifying the ${name} log: ${i} of ${n} entries…`; });
      done.push(`${name} log: ${r.entries} entries, ${r.checkpoints} signed checkpoints`);
    }
    bar.value = 1;
    out.textContent = `Verified in this browser with key ${pub.id}: ${done.join("; ")}. Every entry chains to the one before and every signed root matches.`;
    out.className = "verified";
  } catch (e) { out.textContent = `NOT verified: ${e.message}`; out.className = "failed"; }
});

// -- admin ----------------------------------------------------------------------------------
// Accounts through the admin API: add, change role and sites, disable/enable, unlock, log out
// everywhere, remove. Each row's controls are labelled with the account's name.
const ROLE_NAMES = ["security", "auditor", "dpo", "admin"];
const enc = encodeURIComponent;
function siteBoxes(holder, name, chosen, role) {
  for (const x of sites) {
    const l = document.createElement("label"); l.className = "check";
    const c = document.createElement("input"); c.type = "checkbox"; c.value = x.id; c.checked = chosen.includes(x.id);
    c.disabled = role !== "security"; if (name) c.setAttribute("aria-label", `${name} works at ${x.id}`);
    l.append(c, ` ${x.id}`); holder.append(l);
  }
}
const checked = (holder) => [...holder.querySelectorAll("input:checked")].map((c) => c.value);
async function adminDo(what, path, opts, done) {
  try { await api(path, opts); await loadAdmin(); say(done, true); } catch (e) { say(`${what}: ${e.message}`); }
}
const putJSON = (body) => ({ method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

async function loadAdmin() {
  const users = await getJSON("/users");
  const tb = $("user-rows"); tb.replaceChildren();
  for (const u of users) {
    const tr = document.createElement("tr"); tr.dataset.user = u.name;
    const role = document.createElement("select"); role.className = "role"; role.setAttribute("aria-label", `role of ${u.name}`);
    for (const r of ROLE_NAMES) { const o = document.createElement("option"); o.value = r; o.textContent = r; role.append(o); }
    role.value = u.role;
    const roleTd = document.createElement("td"); roleTd.append(role);
    const siteTd = document.createElement("td"); siteTd.className = "sites"; siteBoxes(siteTd, u.name, u.sites, u.role);
    role.addEventListener("change", () => { for (const c of siteTd.querySelectorAll("input")) c.disabled = role.value !== "security"; });
    const state = [u.disabled ? "disabled" : "active", u.locked ? "locked" : "", u.failed_logins ? `${u.failed_logins} failed logins` : ""].filter(Boolean).join(", ");
    const stTd = td(state); stTd.className = u.disabled ? "failed state" : "state";
    const act = document.createElement("td"); act.className = "actions";
    const btn = (label, cls, fn) => { const b = document.createElement("button"); b.type = "button"; b.textContent = label; b.className = cls; b.setAttribute("aria-label", `${label}: ${u.name}`); b.addEventListener("click", fn); act.append(b); };
    btn("Save role and sites", "save", () => {
      const want = role.value, ss = want === "security" ? checked(siteTd) : [];
      if (want !== u.role) return adminDo(`Changing ${u.name}`, `/users/${enc(u.name)}/role`, putJSON({ role: want, sites: ss }), `${u.name} is now ${want}${ss.length ? " at " + ss.join(", ") : ""}`);
      if (want === "security" && ss.join() !== [...u.sites].sort().join()) return adminDo(`Changing ${u.name}`, `/users/${enc(u.name)}/sites`, putJSON({ sites: ss }), `${u.name} now works at ${ss.join(", ")}`);
      say(`Nothing to change for ${u.name}`, true);
    });
    if (u.disabled) btn("Enable", "enable", () => adminDo(`Enabling ${u.name}`, `/users/${enc(u.name)}/enable`, { method: "POST" }, `${u.name} enabled: it can log in again`));
    else btn("Disable", "disable", () => adminDo(`Disabling ${u.name}`, `/users/${enc(u.name)}/disable`, { method: "POST" }, `${u.name} disabled: logins refused, its sessions ended`));
    if (u.locked) btn("Unlock", "unlock", () => adminDo(`Unlocking ${u.name}`, `/users/${enc(u.name)}/unlock`, { method: "POST" }, `${u.name} unlocked`));
    btn("Log out everywhere", "logout-all", () => adminDo(`Logging ${u.name} out`, `/users/${enc(u.name)}/logout`, { method: "POST" }, `${u.name} logged out everywhere`));
    if (u.name !== me.name) {
      btn("Remove", "remove", () => {
        if (!confirm(`Remove the account ${u.name}? Its sessions end at once; its name stays in the logs.`)) return;
        return adminDo(`Removing ${u.name}`, `/users/${enc(u.name)}`, { method: "DELETE" }, `${u.name} removed`);
      });
    }
    tr.append(td(u.name), roleTd, siteTd, stTd, timeTd(u.created_at), act); tb.append(tr);
  }
  if (!$("new-sites").querySelector("input")) siteBoxes($("new-sites"), "", [], $("new-role").value);
  const h = await getJSON("/health");
  const gb = (n) => `${(n / 1e9).toFixed(1)} GB`;
  $("health").replaceChildren(dataView({ segments: h.segments, store_used: `${gb(h.store_used_bytes)} of ${gb(h.store_total_bytes)}`,
    spool_backlog: h.spool_backlog, oldest_segment: h.oldest_segment, newest_segment: h.newest_segment }));
}
function newRoleSites() { for (const c of $("new-sites").querySelectorAll("input")) c.disabled = $("new-role").value !== "security"; }
$("new-role").addEventListener("change", newRoleSites);
$("user-add").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const role = $("new-role").value, name = $("new-name").value.trim();
  const body = { name, role, sites: role === "security" ? checked($("new-sites")) : [], password: $("new-password").value };
  try { await postJSON("/users", body); ev.target.reset(); newRoleSites(); await loadAdmin(); say(`Account ${name} added (${role})`, true); } catch (e) { say(`Adding ${name}: ${e.message}`); }
});

start();

// -- four eyes: ask before viewing, request approval, break glass; approvers decide ---------------
let pendingAccess = null; // {action, sources, start, end, purpose}: what "Needs approval" is about
async function approvedFor(action, sources, start, end, purpose) {
  const q = new URLSearchParams({ action, start: start.toISOString(), end: end.toISOString() });
  for (const s of sources) q.append("sources", s);
  const c = await getJSON(`/approvals/check?${q}`);
  $("needs-approval").hidden = !c.needed.length || c.covered_by != null;
  if (!c.needed.length || c.covered_by != null) { pendingAccess = null; return true; }
  pendingAccess = { action: c.action, sources, start, end, purpose };
  $("needs-text").textContent = `Needs approval: ${c.action} of ${c.needed.join(", ")} from ${fmt(start)} to ${fmt(end)} needs a second person's approval. Request it, or in an emergency break glass with a reason.`;
  say("Needs approval: request it below");
  return false;
}
function accessBody(extra) {
  const p = pendingAccess;
  return { action: p.action, sources: p.sources, start: p.start.toISOString(), end: p.end.toISOString(), ...extra };
}
$("needs-approval").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if (!pendingAccess) return;
  try {
    const r = await postJSON("/approvals", accessBody({ purpose: pendingAccess.purpose }));
    say(`Requested approval #${r.id}: an approver must approve it before you can view`, true);
  } catch (e) { say(e.message); }
});
$("break-glass").addEventListener("click", async () => {
  if (!pendingAccess) return;
  try {
    const r = await postJSON("/approvals/break-glass", accessBody({ reason: $("glass-reason").value }));
    $("needs-approval").hidden = true;
    say(`Break glass #${r.id}: access until ${fmt(r.expires_at)}, logged and alerted`, true);
  } catch (e) { say(e.message); }
});
async function loadApprovals() {
  const pol = await getJSON("/approvals/policy");
  const rows = await getJSON("/approvals");
  const body = $("approval-rows"); body.replaceChildren();
  for (const a of rows) {
    const tr = document.createElement("tr"); tr.dataset.id = a.id;
    tr.append(td(a.id), td(a.requester), td(a.action), td(a.sources.join(", ")), rangeTd(a.start, a.end), td(a.purpose), td(a.state));
    const cell = td("");
    if (pol.approver && a.state === "pending" && a.requester !== me.name) {
      for (const [verb, label] of [["approve", "Approve"], ["refuse", "Refuse"]]) {
        const b = document.createElement("button"); b.textContent = label; b.className = verb;
        b.addEventListener("click", async () => {
          try { await postJSON(`/approvals/${a.id}/${verb}`, {}); await loadApprovals(); say(`Request #${a.id}: ${verb === "approve" ? "approved" : "refused"}`, true); }
          catch (e) { say(e.message); }
        });
        cell.append(b);
      }
    }
    tr.append(cell); body.append(tr);
  }
}
