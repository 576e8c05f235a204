"use strict";
// The page draws what the server computes (demo.py, through simcse.py and tool.py); it computes no
// embedding, loss or softmax itself.

const $ = (id) => document.getElementById(id);
const TEMPS = [0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1];  // Table D.1's temperatures and a few between
const EXAMPLES = {
  unsup: ["A man is playing a guitar.",
          "A man plays the guitar on stage.",          // a paraphrase of 1: a false negative in the batch
          "A woman is slicing an onion.",
          "Someone is cutting an onion in a kitchen.",
          "The stock market fell sharply today.",
          "Share prices dropped on Monday.",
          "A man is not playing a guitar.",            // a near miss of 1: one word apart, opposite meaning
          "The cat sleeps on a warm windowsill."].join("\n"),
  sup: ["A man is playing a guitar. | A person plays music. | A man is sleeping.",
        "Two dogs run through a field. | Animals are outside. | The dogs are asleep indoors.",
        "A woman slices an onion. | Someone is cooking. | A woman is swimming.",
        "Children play soccer in the park. | Kids are playing a game. | The park is empty."].join("\n"),
};
const SIMILARITY = {sentence: "A man is playing a guitar.",
                    others: "A man plays music.\nSomeone is playing an instrument on stage.\n" +
                            "A man is not playing a guitar.\nA woman is slicing an onion.\nThe market fell."};
let INFO = null;
let seed = 1;
const texts = {unsup: EXAMPLES.unsup, sup: EXAMPLES.sup};  // each mode keeps what was typed in it

// --- talking to the server ---------------------------------------------------------------------------

async function api(path, body) {
  const options = body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"},
                                             body: JSON.stringify(body)};
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {
    throw new Error("the server does not answer (was it stopped?)");
  }
  const result = await response.json().catch(() => ({error: `HTTP ${response.status}`}));
  if (!response.ok) throw new Error(result.error || `HTTP ${response.status}`);
  return result;
}

function say(id, text, kind = "error") {
  const el = $(id);
  el.hidden = !text;
  el.textContent = text || "";
  el.className = `message ${kind}`;
}

function debounce(f, ms = 150) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => f(...args), ms); };
}

function latest(f) {  // only the answer to the newest call is drawn, however the answers arrive
  let ticket = 0;
  return async (...args) => { const mine = ++ticket; return f(() => mine === ticket, ...args); };
}

const el = (tag, attrs = {}, text) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
};
const svgEl = (tag, attrs = {}, text) => {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
};

// --- drawing -------------------------------------------------------------------------------------------

function heatmap(matrix, {low, high, rowLabels, colLabels, titles, extra}) {
  // A table of numbers coloured from low (white) to high (blue); the diagonal outlined.
  const table = el("table", {class: "heat"});
  const head = el("tr");
  head.appendChild(el("th"));
  colLabels.forEach((c) => head.appendChild(el("th", {}, c)));
  if (extra) head.appendChild(el("th", {}, extra.label));
  table.appendChild(head);
  matrix.forEach((row, i) => {
    const tr = el("tr");
    tr.appendChild(el("th", {title: titles[i]}, rowLabels[i]));
    row.forEach((v, j) => {
      const t = Math.max(0, Math.min(1, (v - low) / (high - low)));
      const td = el("td", {class: i === j ? "diag" : "", title: `${titles[i]}  ×  ${colLabels[j]}`},
                    v.toFixed(2));
      td.style.background = `hsl(222, 70%, ${97 - 55 * t}%)`;
      td.style.color = t > 0.6 ? "#fff" : "#1d2330";
      tr.appendChild(td);
    });
    if (extra) tr.appendChild(el("td", {class: "loss"}, extra.values[i].toFixed(3)));
    table.appendChild(tr);
  });
  return table;
}

function plot(svg, series, {xlabel, ylabel, arrows = false, markX = null}) {
  // Lines through each series' [x, y] points, axes fitted to them.
  svg.replaceChildren();
  const W = +svg.getAttribute("width"), H = +svg.getAttribute("height");
  const m = {left: 62, right: 12, top: 14, bottom: 36};
  const all = series.flatMap((s) => s.points).filter((p) => p[0] !== null && p[1] !== null);
  if (!all.length) {
    svg.appendChild(svgEl("text", {x: W / 2, y: H / 2, "text-anchor": "middle"}, "nothing to draw yet"));
    return;
  }
  const span = (values) => {
    let lo = Math.min(...values), hi = Math.max(...values);
    if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
    const pad = (hi - lo) * 0.06;
    return [lo - pad, hi + pad];
  };
  const [x0, x1] = span(all.map((p) => p[0])), [y0, y1] = span(all.map((p) => p[1]));
  const X = (x) => m.left + (x - x0) / (x1 - x0) * (W - m.left - m.right);
  const Y = (y) => H - m.bottom - (y - y0) / (y1 - y0) * (H - m.top - m.bottom);
  const defs = svgEl("defs");
  svg.appendChild(defs);
  const axis = (x1, y1, x2, y2) => svg.appendChild(svgEl("line", {class: "axis", x1, y1, x2, y2}));
  axis(m.left, H - m.bottom, W - m.right, H - m.bottom);
  axis(m.left, m.top, m.left, H - m.bottom);
  for (let k = 0; k <= 4; k++) {
    const x = x0 + (x1 - x0) * k / 4, y = y0 + (y1 - y0) * k / 4;
    const tick = (at, anchor, value) => svg.appendChild(svgEl("text", {...at, "text-anchor": anchor},
                                                              +value.toPrecision(3)));
    tick({x: X(x), y: H - m.bottom + 14}, "middle", x);
    tick({x: m.left - 4, y: Y(y) + 4}, "end", y);
  }
  svg.appendChild(svgEl("text", {x: (m.left + W - m.right) / 2, y: H - 4, "text-anchor": "middle"}, xlabel));
  svg.appendChild(svgEl("text", {x: 12, y: (m.top + H - m.bottom) / 2, "text-anchor": "middle",
                                 transform: `rotate(-90 12 ${(m.top + H - m.bottom) / 2})`}, ylabel));
  if (markX !== null) {
    svg.appendChild(svgEl("line", {x1: X(markX), x2: X(markX), y1: m.top, y2: H - m.bottom,
                                   stroke: "#bbb", "stroke-dasharray": "4 3"}));
  }
  series.forEach((s, i) => {
    const color = s.color || `hsl(${(i * 67 + 222) % 360}, 65%, 45%)`;
    const points = s.points.filter((p) => p[0] !== null && p[1] !== null);
    if (arrows) {
      defs.appendChild(svgEl("marker", {id: `arrow-${svg.id}-${i}`, viewBox: "0 0 10 10", refX: 9, refY: 5,
                                        markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse"}))
        .appendChild(svgEl("path", {d: "M 0 0 L 10 5 L 0 10 z", fill: color}));
    }
    const line = svgEl("polyline", {class: "curve", "data-name": s.name, stroke: color,
                                    points: points.map((p) => `${X(p[0])},${Y(p[1])}`).join(" ")});
    if (arrows) line.setAttribute("marker-mid", `url(#arrow-${svg.id}-${i})`);
    if (arrows) line.setAttribute("marker-end", `url(#arrow-${svg.id}-${i})`);
    svg.appendChild(line);
    points.forEach((p) => svg.appendChild(svgEl("circle", {cx: X(p[0]), cy: Y(p[1]), r: 2.5, fill: color})));
    svg.appendChild(svgEl("text", {x: W - m.right - 4, y: m.top + 12 + 13 * i, "text-anchor": "end",
                                   fill: color}, s.name));
  });
}

function bars(scores, labels) {
  const box = el("div", {class: "bars"});
  scores.forEach((s, i) => {
    const row = el("div", {class: "bar-row"});
    row.appendChild(el("span", {class: "sentence"}, labels[i]));
    const track = el("div", {class: "track"});
    const fill = el("div", {class: s < 0 ? "fill negative" : "fill"});
    fill.style.left = `${50 + Math.min(0, s) * 50}%`;  // the middle is 0; cosines run from -1 to 1
    fill.style.width = `${Math.abs(s) * 50}%`;
    track.appendChild(fill);
    row.appendChild(track);
    row.appendChild(el("span", {class: "score"}, s.toFixed(3)));
    box.appendChild(row);
  });
  return box;
}

// --- view 1: two views of a batch ------------------------------------------------------------------------

const mode = () => document.querySelector("input[name=mode]:checked").value;
const temp = () => TEMPS[+$("temp").value];

function viewsRequest(model = "A") {
  const lines = $("batch").value.split("\n").filter((line) => line.trim() !== "");
  const request = {model, p: +$("p").value, temp: temp(), pooler: $("pooler").value,
                   fixed_mask: $("fixed-mask").checked, seed};
  if (mode() === "sup") {
    request.supervised = true;
    request.triples = lines.map((line) => line.split("|").map((s) => s.trim()));
    request.hard_negative_weight = +$("hnw").value;
  } else {
    request.sentences = lines;
  }
  return {request, lines};
}

function labels(request, lines, r) {
  const n = r.n, sup = !!request.supervised;
  const anchors = sup ? request.triples.map((t) => t[0]) : lines;
  const rowLabels = anchors.map((_, i) => `${i + 1}`);
  const rowTexts = anchors.map((s, i) => `${i + 1} · ${s.length > 30 ? s.slice(0, 29) + "…" : s}`);
  const colLabels = [...Array(n).keys()].map((j) => `${j + 1}+`)
    .concat(sup ? [...Array(n).keys()].map((j) => `${j + 1}−`) : []);
  return {rowLabels, colLabels, titles: anchors, rowTexts};
}

function summaryText(r) {
  return `loss ${r.loss.toFixed(4)} (simcse.contrastive_loss) · chance ln ${r.cos[0].length} = ` +
         `${r.chance.toFixed(4)} · in-batch top-1 ${r.top1} of ${r.n}`;
}

function renderViews(r, request, lines) {
  const names = labels(request, lines, r);
  $("summary").textContent = summaryText(r);
  $("cos-matrix").replaceChildren(heatmap(r.cos, {low: -0.2, high: 1, ...names, rowLabels: names.rowTexts}));
  const rowLoss = {label: "−log pᵢᵢ", values: r.row_loss};
  $("softmax-matrix").replaceChildren(heatmap(r.softmax, {low: 0, high: 1, ...names, extra: rowLoss}));
  const same = request.p === 0 || request.fixed_mask;
  $("p0-note").hidden = !same;
  if (same) $("p0-note").replaceChildren(...p0Note(request));
}

function p0Note(request) {
  const t3 = INFO.table3;
  const what = request.fixed_mask
    ? "Fixed mask: both views share one dropout mask, so each positive is its anchor itself, as at p = 0 " +
      "(the paper's Table 3, \"Fixed 0.1\": 43.6 on STS-B dev)."
    : "p = 0: no dropout, so the two views are the same vector and every cosine on the diagonal is 1.00.";
  const parts = [el("p", {}, what + " The positive is found trivially: the loss falls by pushing the other " +
    "sentences apart, and nothing teaches the encoder what makes two different sentences similar."),
    el("p", {}, "The paper's Table 3 (BERT-base, STS-B dev, Spearman ×100): 71.1 at p = 0 against 82.5 " +
                "at p = 0.1.")];
  if (t3) {
    parts.push(el("p", {}, `Measured in this project on the packaged all-MiniLM-L6-v2 (results/table3.md, ` +
      `mean of its seeds): ${t3.p0.toFixed(2)} at p = 0 against ${t3.p01.toFixed(2)} at p = 0.1, ` +
      `${(t3.p0 - t3.p01).toFixed(2)} points: no collapse. MiniLM starts as a trained sentence encoder, ` +
      `and these runs are short. Command: ${t3.command}`));
  }
  return parts;
}

const updateViews = latest(async (current) => {
  const {request, lines} = viewsRequest();
  try {
    const r = await api("/api/views", request);
    if (!current()) return;
    renderViews(r, request, lines);
    say("views-message", r.notes.join("; "), "note");
  } catch (e) {
    if (current()) say("views-message", e.message);
  }
});

let curve = null;  // the last answer: moving p moves only the dashed line

function drawCurve() {
  if (!curve) return $("curve").replaceChildren();
  plot($("curve"), [{name: "positive pairs (diagonal)", points: curve.map((q) => [q.p, q.positive])},
                    {name: "negatives (off the diagonal)", points: curve.map((q) => [q.p, q.negative])}],
       {xlabel: "dropout p", ylabel: "mean cosine", markX: +$("p").value});
}

const updateCurve = latest(async (current) => {
  try {
    const r = await api("/api/dropout-curve", viewsRequest().request);
    if (current()) curve = r.points;
  } catch (e) {
    if (current()) curve = null;
  }
  if (current()) drawCurve();
});

function showSettings() {
  $("p-value").textContent = (+$("p").value).toFixed(2);
  $("temp-value").textContent = temp();
  const w = +$("hnw").value;
  $("hnw-value").textContent = `${w.toFixed(1)} (α = e^w = ${Math.exp(w).toFixed(2)})`;
  $("seed-line").textContent = `masks drawn with seed ${seed}`;
  $("hnw-label").hidden = mode() !== "sup";
  $("batch-hint").textContent = mode() === "sup"
    ? "one row a line: premise | entailment | contradiction (eq. 5: the N × 2N matrix)"
    : `one sentence a line, 2 to ${INFO ? INFO.limits.sentences : 32}`;
}

// --- views 2 and 3: similarity and search ----------------------------------------------------------------

function similarityRequest(model = "A") {
  return {model, sentence: $("sim-sentence").value,
          others: $("sim-others").value.split("\n").filter((line) => line.trim() !== "")};
}

const updateSimilarity = latest(async (current) => {
  const request = similarityRequest();
  try {
    const r = await api("/api/similarity", request);
    if (!current()) return;
    $("sim-results").replaceChildren(bars(r.scores, request.others));
    say("sim-message", r.notes.join("; "), "note");
  } catch (e) {
    if (current()) say("sim-message", e.message);
  }
});

function searchRequest(model = "A") {
  return {model, query: $("query").value, top_k: Math.round(+$("top-k").value),
          threshold: +$("threshold").value};
}

function hitsList(hits, threshold) {
  const list = el("ol", {class: "hits"});
  hits.forEach((h) => {
    const li = el("li");
    li.appendChild(el("span", {class: "score"}, h.score.toFixed(4)));
    li.appendChild(el("span", {class: "sentence"}, h.sentence));
    list.appendChild(li);
  });
  if (!hits.length) list.appendChild(el("li", {class: "small"}, `nothing at cosine ≥ ${threshold}`));
  return list;
}

const updateSearch = latest(async (current) => {
  const request = searchRequest();
  try {
    const r = await api("/api/search", request);
    if (!current()) return;
    $("search-results").replaceChildren(...hitsList(r.hits, request.threshold).childNodes);
    say("search-message", r.notes.join("; "), "note");
  } catch (e) {
    if (current()) { say("search-message", e.message); $("search-results").replaceChildren(); }
  }
});

// --- view 4: training runs -------------------------------------------------------------------------------

let RUNS = null;

function drawRuns() {
  const chosen = RUNS.runs.filter((_, i) => $(`run-${i}`) && $(`run-${i}`).checked);
  const series = (x, y) => chosen.map((run) => ({name: run.name,
                                                  points: run.records.map((r) => [r[x], r[y]])}));
  plot($("plot-dev"), series("step", "stsb_dev"), {xlabel: "step", ylabel: "STS-B dev"});
  plot($("plot-loss"), series("step", "loss"), {xlabel: "step", ylabel: "loss"});
  plot($("plot-au"), series("uniform", "align"),
       {xlabel: "uniformity (lower is better)", ylabel: "alignment (lower is better)", arrows: true});
}

function markdownTable(text) {  // ablate.py's TABLE.md: a title, a few lines, one table
  const box = el("div");
  let table = null;
  for (const line of text.split("\n")) {
    if (line.startsWith("|")) {
      const cells = line.split("|").slice(1, -1).map((c) => c.trim());
      if (cells.every((c) => /^-+$/.test(c))) continue;
      if (!table) { table = el("table"); box.appendChild(table); }
      const tr = el("tr");
      cells.forEach((c) => tr.appendChild(el(table.rows.length ? "td" : "th", {}, c.replace(/\*\*|`/g, ""))));
      table.appendChild(tr);
    } else if (line.trim()) {
      table = null;
      const text = line.replace(/^#+\s*/, "").replace(/`/g, "");
      box.appendChild(el(line.startsWith("#") ? "h4" : "p", {}, text));
    }
  }
  return box;
}

async function loadRuns() {
  try {
    RUNS = await api("/api/runs");
  } catch (e) {
    say("runs-message", e.message);
    return;
  }
  say("runs-message", "");
  $("runs-line").textContent = RUNS.roots.length
    ? `run folders: ${RUNS.roots.join(", ")} (${RUNS.runs.length} runs, ${RUNS.reports.length} reports)`
    : "no run folders: start with --runs DIR (train.py's --output-dir, ablate.py's folder)";
  $("runs-list").replaceChildren(...RUNS.runs.map((run, i) => {
    const li = el("li");
    if (run.error) {
      li.appendChild(el("span", {class: "error"}, `${run.name}: ${run.error}`));
      return li;
    }
    const best = Math.max(...run.records.map((r) => r.stsb_dev ?? -Infinity));
    const label = el("label");
    const box = el("input", {type: "checkbox", id: `run-${i}`});
    box.addEventListener("change", drawRuns);
    label.append(box, ` ${run.name}: ${run.records.length} evaluations, best STS-B dev ` +
                      (isFinite(best) ? best.toFixed(2) : "—"));
    const asB = el("button", {class: "as-b"}, "as model B");
    asB.addEventListener("click", () => {
      $("path-B").value = `${RUNS.roots[run.root]}/${run.path}/best`;
      showView("compare");
      loadModel("B");
    });
    li.append(label, " ", asB);
    return li;
  }));
  $("reports").replaceChildren(...RUNS.reports.map((report) => {
    const box = el("div", {class: "report"});
    box.appendChild(el("p", {class: "small"}, report.name));
    box.appendChild(markdownTable(report.markdown));
    if (report.png) {
      box.appendChild(el("img", {alt: report.name,
                                 src: `/file?root=${report.root}&path=${encodeURIComponent(report.png)}`}));
    }
    return box;
  }));
  drawRuns();
}

// --- view 5: before and after ----------------------------------------------------------------------------

async function loadModel(name) {
  say("model-message", `loading ${$(`path-${name}`).value} …`, "note");
  try {
    INFO = await api("/api/model", {model: name, path: $(`path-${name}`).value});
    say("model-message", `model ${name}: ${INFO.models[name].path}` +
        (INFO.models[name].notes.length ? ` (${INFO.models[name].notes.join("; ")})` : ""), "note");
    showInfo();
  } catch (e) {
    say("model-message", e.message);
  }
}

async function compareOne(name) {
  const box = $(`compare-${name}`);
  const model = INFO.models[name];
  if (!model) {
    box.replaceChildren(el("p", {class: "small"}, `no model ${name}: type a path above and load it`));
    return;
  }
  box.replaceChildren(el("h4", {}, `${name}: ${model.path} (${model.pooler})`));
  const part = async (title, call) => {
    box.appendChild(el("h3", {}, title));
    try {
      box.appendChild(await call());
    } catch (e) {
      box.appendChild(el("p", {class: "message error"}, e.message));
    }
  };
  await part("1 · two views", async () => {
    const {request, lines} = viewsRequest(name);
    const r = await api("/api/views", request);
    const div = el("div");
    div.append(el("p", {class: "summary"}, summaryText(r)), heatmap(r.cos, {low: -0.2, high: 1,
                                                                            ...labels(request, lines, r)}));
    return div;
  });
  await part("2 · similarity", async () => {
    const request = similarityRequest(name);
    return bars((await api("/api/similarity", request)).scores, request.others);
  });
  await part("3 · search", async () => {
    const request = searchRequest(name);
    return hitsList((await api("/api/search", request)).hits, request.threshold);
  });
}

// --- the page ---------------------------------------------------------------------------------------------

function showView(name) {
  for (const b of document.querySelectorAll("nav button")) {
    b.classList.toggle("active", b.dataset.view === name);
  }
  document.querySelectorAll(".view").forEach((v) => { v.hidden = v.id !== `view-${name}`; });
  if (name === "runs") loadRuns();
  if (name === "search") showInfo();
}

function showInfo() {
  const a = INFO.models.A, b = INFO.models.B;
  $("model-line").textContent = `model A: ${a.path} (${a.layers} layers, ${a.hidden} wide, embedding ` +
    `${a.pooler})` + (b ? ` · model B: ${b.path}` : "");
  const indexing = a.indexed < a.corpus_size ? ` — indexing: ${a.indexed} of ${a.corpus_size}` : "";
  $("corpus-line").textContent = `corpus: ${INFO.corpus} (${a.corpus_size} sentences)${indexing}` +
    (a.index_error ? ` — ${a.index_error}` : "");
  $("path-A").value = a.path;
  if (b && !$("path-B").value) $("path-B").value = b.path;
  if (indexing && !a.index_error) {  // again in a second, until the index is built
    setTimeout(async () => { INFO = await api("/api/info"); showInfo(); }, 1000);
  }
}

async function start() {
  INFO = await api("/api/info");
  $("pooler").replaceChildren(...INFO.poolers.map((p) => el("option", {value: p}, p)));
  $("pooler").value = INFO.models.A.pooler;
  $("p").value = Math.min(0.5, INFO.models.A.dropout);  // the checkpoint's own rate to start with
  $("batch").value = texts.unsup;
  $("sim-sentence").value = SIMILARITY.sentence;
  $("sim-others").value = SIMILARITY.others;
  $("query").value = "A man is playing a guitar.";
  showInfo();
  showSettings();
  const both = debounce(() => { updateViews(); updateCurve(); });
  $("batch").addEventListener("input", () => { texts[mode()] = $("batch").value; both(); });
  document.querySelectorAll("input[name=mode]").forEach((r) => r.addEventListener("change", () => {
    $("batch").value = texts[mode()];
    showSettings();
    both();
  }));
  for (const id of ["p", "temp", "hnw"]) {
    $(id).addEventListener("input", () => { showSettings(); updateViews(); if (id === "p") drawCurve(); });
  }
  for (const id of ["pooler", "fixed-mask"]) $(id).addEventListener("change", both);
  $("new-masks").addEventListener("click", () => {
    seed = Math.floor(Math.random() * 2 ** 32);
    showSettings();
    both();
  });
  $("sim-go").addEventListener("click", updateSimilarity);
  $("sim-sentence").addEventListener("input", debounce(updateSimilarity, 300));
  $("sim-others").addEventListener("input", debounce(updateSimilarity, 300));
  $("search-go").addEventListener("click", updateSearch);
  $("query").addEventListener("keydown", (e) => { if (e.key === "Enter") updateSearch(); });
  $("runs-reload").addEventListener("click", loadRuns);
  for (const b of document.querySelectorAll("[data-load]")) {
    b.addEventListener("click", () => loadModel(b.dataset.load));
  }
  $("compare-go").addEventListener("click", async () => { await compareOne("A"); await compareOne("B"); });
  for (const b of document.querySelectorAll("nav button")) {
    b.addEventListener("click", () => showView(b.dataset.view));
  }
  updateViews();
  updateCurve();
  updateSimilarity();
}

start().catch((e) => {
  document.body.prepend(el("p", {class: "message error"}, `the page could not start: ${e.message}`));
});
