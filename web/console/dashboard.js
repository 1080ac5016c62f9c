// Dashboard: payments per minute, approval rate, declines by reason, fees today, queue depths
// and consumers, dead letters waiting; polled every few seconds while open.

import { api } from "/assets/api.js";
import { t, reason, clock } from "/assets/i18n.js";
import { el, clear, card, table, barChart, showError, hideBanner } from "./ui.js";

const EVERY_MS = 5000;
let timer = null;
let root = null;

export function show(section) {
  root = section;
  hide();
  refresh();
  timer = setInterval(refresh, EVERY_MS);
}

export function hide() {
  if (timer) clearInterval(timer);
  timer = null;
}

async function refresh() {
  let d;
  try {
    d = await api("GET", "/admin/v1/dashboard?minutes=30");
  } catch (e) {
    showError(e);
    return;
  }
  hideBanner();
  render(d);
}

function stat(key, value, id) {
  return el("div", { class: "card stat" }, el("span", { i18n: key }), el("strong", { id, text: value }));
}

function render(d) {
  const p = d.payments;
  const rate = p.approval_rate === null ? "—" : `${(p.approval_rate * 100).toFixed(1)}%`;
  const last = p.per_minute[p.per_minute.length - 1];
  const stats = el(
    "div",
    { class: "grid" },
    stat("dash.per_minute", String(last ? last.approved + last.declined : 0), "dash-per-minute"),
    stat("dash.approval", rate, "dash-approval"),
    stat("dash.approved", String(p.approved), "dash-approved"),
    stat("dash.fees", p.fees_approved, "dash-fees"),
    stat("dash.dead", d.dead_letters === null ? "—" : String(d.dead_letters), "dash-dead"),
  );
  const labels = p.per_minute.map((m) => clock(m.minute));
  const chart = card(
    el("h2", { i18n: "dash.chart" }),
    barChart(
      p.per_minute,
      [
        { cls: "ok", values: p.per_minute.map((m) => m.approved) },
        { cls: "no", values: p.per_minute.map((m) => m.declined) },
      ],
      labels,
    ),
    el("p", { class: "muted small", text: t("dash.legend") }),
  );
  const reasons = Object.entries(p.declines_by_reason).sort((a, b) => b[1] - a[1]);
  const declines = card(
    el("h2", { i18n: "dash.declines" }),
    reasons.length
      ? table(
          ["dash.reason", { key: "dash.count", num: true }],
          reasons.map(([r, n]) => [`${reason(r)} (${r})`, String(n)]),
        )
      : el("p", { class: "muted", i18n: "dash.no_declines" }),
  );
  let queues;
  if (d.queues) {
    queues = card(
      el("h2", { i18n: "dash.queues" }),
      table(
        ["q.name", { key: "q.ready", num: true }, { key: "q.unacked", num: true }, { key: "q.consumers", num: true }],
        d.queues.pipeline.map((q) => [q.name, String(q.ready ?? "—"), String(q.unacked ?? "—"), String(q.consumers ?? "—")]),
      ),
    );
  } else {
    queues = card(el("h2", { i18n: "dash.queues" }), el("p", { class: "bad-text", text: d.queues_error || "" }));
  }
  clear(
    root,
    el("p", { class: "muted small", text: t("dash.updated", { time: clock(d.at) }) }),
    stats,
    chart,
    el("div", { class: "grid" }, declines, queues),
  );
}
