// The console's small helpers: building elements (never innerHTML with data), the confirm
// dialog before money moves, the banner for errors, and hand-drawn SVG bar charts.

import { t, errorText } from "/assets/i18n.js";

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k === "i18n") {
      e.dataset.i18n = v;
      e.textContent = t(v);
    } else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export function clear(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
  return node;
}

export function card(...children) {
  return el("div", { class: "card" }, ...children);
}

export function table(headers, rows, rowAttrs) {
  return el(
    "table",
    { class: "list" },
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { class: h.num ? "num" : null }, t(h.key || h))))),
    el(
      "tbody",
      {},
      rows.map((cells, i) =>
        el(
          "tr",
          rowAttrs ? rowAttrs(i) : {},
          cells.map((c, j) => el("td", { class: headers[j].num ? "num" : null }, c)),
        ),
      ),
    ),
  );
}

const banner = () => document.getElementById("banner");

export function showError(err) {
  const b = banner();
  b.textContent = errorText(err);
  b.className = "banner bad";
  b.hidden = false;
}

export function showInfo(text) {
  const b = banner();
  b.textContent = text;
  b.className = "banner";
  b.hidden = false;
}

export function hideBanner() {
  banner().hidden = true;
}

// Asks before an action that moves money (or cannot be undone); resolves true on "confirm".
export function confirmAction(text) {
  const d = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.returnValue = "";
    d.showModal();
  });
}

// Runs an action with its button disabled; errors go to the banner. Returns its value or
// undefined. A click (a button given) clears the last message first; a reload of a screen
// after an action (no button) leaves that action's message showing.
export async function act(button, f) {
  if (button) button.disabled = true;
  try {
    if (button) hideBanner();
    return await f();
  } catch (e) {
    showError(e);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

const SVG = "http://www.w3.org/2000/svg";

function s(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

// A bar chart: `series` is [{label, values: [..], cls}] stacked per column, `labels` under
// every `every`-th column.
export function barChart(columns, series, labels, every = 5) {
  const w = 600;
  const h = 120;
  const pad = 14;
  const max = Math.max(1, ...columns.map((_, i) => series.reduce((a, x) => a + (x.values[i] || 0), 0)));
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "none", role: "img" });
  const bw = w / Math.max(1, columns.length);
  columns.forEach((_, i) => {
    let y = h - pad;
    for (const x of series) {
      const v = x.values[i] || 0;
      const bh = ((h - 2 * pad) * v) / max;
      if (bh > 0) {
        const r = s("rect", { x: i * bw + 1, y: y - bh, width: Math.max(1, bw - 2), height: bh, class: x.cls });
        r.append(s("title", {}));
        r.firstChild.textContent = `${labels[i]}: ${v}`;
        svg.append(r);
      }
      y -= bh;
    }
    if (i % every === 0) {
      const tx = s("text", { x: i * bw, y: h - 2 });
      tx.textContent = labels[i];
      svg.append(tx);
    }
  });
  const top = s("text", { x: 2, y: 10 });
  top.textContent = String(max);
  svg.append(top);
  return svg;
}

export function download(href) {
  return el("a", { href, download: "" }, href.split("/").pop().split("?")[0]);
}
