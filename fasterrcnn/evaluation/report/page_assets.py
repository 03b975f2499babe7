"""The inline style sheet and script of the report page (:mod:`.page`), as string constants.

Nothing here loads anything: no fonts, no libraries, no requests. The script makes the
per-class table sortable by clicking a header (``data-type="number"`` columns by the cells'
``data-value``, the others by a locale collator; cells without ``data-value`` always last)
and opens a clicked figure's image full size in an overlay (a click or Escape closes it).
"""

from __future__ import annotations

CSS = """
* { box-sizing: border-box; }
body {
  margin: 0;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  font-size: 15px;
  line-height: 1.45;
  color: #1d1d1f;
  background: #f4f5f7;
}
header {
  padding: 1em 1.5em 0.8em;
  background: #fff;
  border-bottom: 1px solid #dcdde1;
}
h1 { margin: 0 0 0.3em; font-size: 1.45em; }
h2 { margin: 0 0 0.6em; font-size: 1.15em; }
main { max-width: 1400px; margin: 0 auto; padding: 1em 1.5em 2em; }
section {
  margin: 0 0 1.2em;
  padding: 1em 1.2em;
  background: #fff;
  border: 1px solid #e2e3e7;
  border-radius: 10px;
}
ul.summary { margin: 0; padding-left: 1.2em; color: #3a3a40; }
.stats {
  display: grid;
  grid-template-columns: repeat(auto-fill, minmax(84px, 1fr));
  gap: 0.6em;
}
.stat {
  padding: 0.5em 0.7em;
  background: #f7f8fa;
  border: 1px solid #e6e7eb;
  border-radius: 8px;
}
.stat .name { display: block; font-size: 0.8em; color: #6e6e73; }
.stat .value { display: block; font-size: 1.35em; font-weight: 600; }
.grid { display: grid; gap: 1em; }
.grid.plots { grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); }
.grid.images { grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); }
figure { margin: 0; }
figure img {
  display: block;
  max-width: 100%;
  height: auto;
  margin: 0 auto;
  border: 1px solid #e2e3e7;
  border-radius: 6px;
  cursor: zoom-in;
}
figcaption { margin-top: 0.35em; font-size: 0.88em; color: #3a3a40; text-align: center; }
.legend { margin: -0.3em 0 0.8em; font-size: 0.9em; color: #6e6e73; }
.table-wrap { max-height: 70vh; overflow: auto; }
table { border-collapse: collapse; width: 100%; font-size: 0.92em; }
th, td { padding: 0.3em 0.7em; border-bottom: 1px solid #ececf0; white-space: nowrap; }
th {
  position: sticky;
  top: 0;
  background: #f0f1f4;
  text-align: left;
  cursor: pointer;
  user-select: none;
}
th:hover { background: #e4e6eb; }
th .arrow { display: inline-block; min-width: 1em; margin-left: 0.25em; color: #0a66d8; }
th[data-type="number"], td.num { text-align: right; }
td.missing { color: #a0a0a6; }
tbody tr:nth-child(even) { background: #fafafb; }
tbody tr:hover { background: #eef5ff; }
#lightbox {
  position: fixed;
  inset: 0;
  display: flex;
  align-items: center;
  justify-content: center;
  background: rgba(0, 0, 0, 0.85);
  cursor: zoom-out;
}
#lightbox[hidden] { display: none; }
#lightbox img { max-width: 96vw; max-height: 96vh; background: #fff; }
"""

JS = """
"use strict";
(function () {
  const table = document.getElementById("class-table");
  if (table) {
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    const heads = Array.from(table.tHead.rows[0].cells);
    const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
    let column = -1;
    let direction = 1;
    const compare = (numeric, x, y) => {
      if (!numeric) return collator.compare(x, y);
      const a = Number(x);
      const b = Number(y);
      return a < b ? -1 : a > b ? 1 : 0;
    };
    const sortBy = (c) => {
      direction = column === c ? -direction : 1;
      column = c;
      const numeric = heads[c].dataset.type === "number";
      const order = new Map(rows.map((row, i) => [row, i]));
      rows.sort((r, s) => {
        const x = r.cells[c].dataset.value;
        const y = s.cells[c].dataset.value;
        if (x === undefined || y === undefined) {
          if (x !== y) return x === undefined ? 1 : -1;
        } else {
          const found = compare(numeric, x, y);
          if (found !== 0) return direction * found;
        }
        return order.get(r) - order.get(s);
      });
      body.append(...rows);
      heads.forEach((th, i) => {
        const on = i === c;
        th.setAttribute("aria-sort", on ? (direction > 0 ? "ascending" : "descending") : "none");
        th.querySelector(".arrow").textContent = on ? (direction > 0 ? "\\u25b2" : "\\u25bc") : "";
      });
    };
    heads.forEach((th, c) => {
      th.addEventListener("click", () => sortBy(c));
      th.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sortBy(c);
        }
      });
    });
  }
  const box = document.getElementById("lightbox");
  const close = () => {
    box.hidden = true;
    box.replaceChildren();
  };
  document.querySelectorAll("figure img").forEach((img) => {
    img.addEventListener("click", () => {
      const big = document.createElement("img");
      big.src = img.src;
      big.alt = img.alt;
      box.replaceChildren(big);
      box.hidden = false;
    });
  });
  box.addEventListener("click", close);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !box.hidden) close();
  });
})();
"""
