// The fasterrcnn page: send each chosen image to POST /v1/detect once (every detection the
// model keeps), then draw, list and filter its detections here, without another request.
"use strict";

const results = []; // {name, image, response, view: {article, canvas, tbody, summary, link}}
const slider = document.getElementById("score-slider");
const scoreValue = document.getElementById("score-value");
const classFilter = document.getElementById("class-filter");
const statusLine = document.getElementById("status");
const resultsBox = document.getElementById("results");
const template = document.getElementById("result-template");

// The colour of a category: the golden-ratio hue walk the drawn JPEGs use.
function classColor(categoryId) {
  const h = (categoryId * 0.618033988749895) % 1;
  const s = 0.85;
  const v = 0.95;
  const i = Math.floor(h * 6);
  const f = h * 6 - i;
  const p = v * (1 - s);
  const q = v * (1 - s * f);
  const t = v * (1 - s * (1 - f));
  const [r, g, b] = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][i % 6];
  return [r, g, b].map((c) => Math.floor(c * 255));
}

function css(rgb) {
  return `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
}

// The detections the slider and the class filter let through, highest score first.
function visible(response) {
  const threshold = Number(slider.value);
  const wanted = classFilter.value;
  return response.detections.filter(
    (d) => d.score >= threshold && (wanted === "" || String(d.category_id) === wanted),
  );
}

function drawResult(result) {
  const { canvas, tbody, summary, link } = result.view;
  const shown = visible(result.response);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(result.image, 0, 0);
  const width = Math.max(3, Math.round(Math.max(canvas.width, canvas.height) / 400));
  const font = Math.max(12, Math.round(Math.max(canvas.width, canvas.height) / 60));
  ctx.font = `${font}px sans-serif`;
  ctx.textBaseline = "top";
  // Lowest scores first, so that the most confident boxes end up on top.
  for (const d of [...shown].reverse()) {
    const { xmin, ymin, xmax, ymax } = d.box;
    const color = css(classColor(d.category_id));
    ctx.lineWidth = width;
    ctx.strokeStyle = color;
    ctx.strokeRect(xmin, ymin, xmax - xmin, ymax - ymin);
    const text = `${d.label} ${d.score.toFixed(2)}`;
    const textWidth = ctx.measureText(text).width + 4;
    const top = ymin - font - 4 >= 0 ? ymin - font - 4 : ymin;
    ctx.fillStyle = color;
    ctx.fillRect(xmin, top, textWidth, font + 4);
    ctx.fillStyle = "#000";
    ctx.fillText(text, xmin + 2, top + 2);
  }
  canvas.dataset.drawn = String(shown.length);

  tbody.replaceChildren(
    ...shown.map((d, n) => {
      const row = document.createElement("tr");
      const cells = [n + 1, d.label, d.category_id, d.score.toFixed(5),
        d.box.xmin, d.box.ymin, d.box.xmax, d.box.ymax];
      cells.forEach((value, k) => {
        const cell = document.createElement("td");
        if (k === 1) {
          cell.className = "label";
          const swatch = document.createElement("span");
          swatch.className = "swatch";
          swatch.style.background = css(classColor(d.category_id));
          cell.append(swatch);
        }
        cell.append(String(value));
        row.append(cell);
      });
      return row;
    }),
  );
  const total = result.response.detections.length;
  summary.textContent = `${shown.length} of ${total} detections shown, ` +
    `${result.response.image.width} x ${result.response.image.height}, ` +
    `${result.response.timing_ms.total} ms`;
  const json = JSON.stringify({ ...result.response, detections: shown }, null, 1);
  if (link.href) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(new Blob([json], { type: "application/json" }));
}

function redraw() {
  scoreValue.textContent = Number(slider.value).toFixed(2);
  for (const result of results) if (result.response) drawResult(result);
}

// The class filter offers the classes found so far, with their counts.
function updateClassFilter() {
  const counts = new Map();
  for (const result of results) {
    for (const d of result.response ? result.response.detections : []) {
      const entry = counts.get(d.category_id) || { label: d.label, n: 0 };
      entry.n += 1;
      counts.set(d.category_id, entry);
    }
  }
  const chosen = classFilter.value;
  const options = [...counts.entries()].sort((a, b) => a[1].label.localeCompare(b[1].label));
  classFilter.replaceChildren(new Option("all classes", ""));
  for (const [id, entry] of options) {
    classFilter.append(new Option(`${entry.label} (${entry.n})`, String(id)));
  }
  classFilter.value = counts.has(Number(chosen)) ? chosen : "";
}

function newView(name) {
  const article = template.content.firstElementChild.cloneNode(true);
  article.querySelector(".file-name").textContent = name;
  const link = article.querySelector(".download");
  link.download = name.replace(/\.[^.]*$/, "") + ".json";
  resultsBox.append(article);
  return {
    article,
    link,
    canvas: article.querySelector("canvas"),
    tbody: article.querySelector("tbody"),
    summary: article.querySelector(".summary"),
    error: article.querySelector(".error"),
  };
}

function loadImage(file) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("the browser cannot show this image"));
    image.src = URL.createObjectURL(file);
  });
}

async function detect(file) {
  const view = newView(file.name);
  const result = { name: file.name, image: null, response: null, view };
  results.push(result);
  view.article.dataset.state = "pending";
  try {
    const form = new FormData();
    form.append("image", file, file.name);
    const reply = await fetch("/v1/detect?score_threshold=0", { method: "POST", body: form });
    const body = await reply.json();
    if (!reply.ok) throw new Error(`${reply.status}: ${body.error}`);
    result.image = await loadImage(file);
    view.canvas.width = body.image.width;
    view.canvas.height = body.image.height;
    result.response = body;
    updateClassFilter();
    redraw();
    view.article.dataset.state = "done";
  } catch (err) {
    view.error.hidden = false;
    view.error.textContent = `${file.name}: ${err.message}`;
    view.canvas.hidden = true;
    view.link.hidden = true;
    view.article.dataset.state = "error";
  }
}

async function detectAll(files) {
  const list = [...files];
  statusLine.textContent = `detecting in ${list.length} image(s)...`;
  await Promise.all(list.map(detect));
  statusLine.textContent = `${results.length} image(s) done`;
}

document.getElementById("file-input").addEventListener("change", (event) => {
  detectAll(event.target.files);
  event.target.value = "";
});

const dropZone = document.getElementById("drop-zone");
dropZone.addEventListener("dragover", (event) => {
  event.preventDefault();
  dropZone.classList.add("over");
});
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("over"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("over");
  detectAll(event.dataTransfer.files);
});

slider.addEventListener("input", redraw);
classFilter.addEventListener("change", redraw);

fetch("/v1/models")
  .then((reply) => reply.json())
  .then((info) => {
    document.getElementById("model-name").textContent =
      `${info.model}: ${info.classes.length} classes, on ${info.device}`;
  })
  .catch(() => {
    document.getElementById("model-name").textContent = "the server did not answer";
  });
