// The daily report per merchant (a bar chart of net per merchant, the table, the CSV
// download) and the ledger check (/admin/v1/verify).

import { api } from "/assets/api.js";
import { t } from "/assets/i18n.js";
import { fen } from "/assets/money.js";
import { el, clear, card, table, act, barChart } from "./ui.js";

let root = null;
let date = "";

export function show(section) {
  root = section;
  const form = el(
    "form",
    { class: "inline", id: "report-form" },
    el("label", {}, t("r.date"), el("input", { name: "date", type: "date", value: date })),
    el("button", { type: "submit", class: "primary", i18n: "r.show" }),
  );
  const out = el("div", { id: "report-out" });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    date = new FormData(form).get("date") || "";
    report(out, form.querySelector("button"));
  });
  const verifyOut = el("div", { id: "verify-out" });
  const verify = el("button", { type: "button", id: "verify", class: "primary", i18n: "r.verify" });
  verify.addEventListener("click", () =>
    act(verify, async () => {
      const v = await api("GET", "/admin/v1/verify");
      clear(
        verifyOut,
        el("p", { id: "verify-result", class: v.ok ? "ok-text" : "bad-text", text: v.ok ? t("r.ledger_ok") : t("r.ledger_bad") }),
        el("pre", { class: "out" }, JSON.stringify(v, null, 2)),
      );
    }),
  );
  clear(root, card(el("h2", { i18n: "r.title" }), form, out), card(el("h2", { i18n: "r.ledger" }), verify, verifyOut));
  report(out, null);
}

async function report(out, button) {
  const q = date ? `?date=${encodeURIComponent(date)}` : "";
  const r = await act(button, () => api("GET", `/admin/v1/reports/daily${q}`));
  if (!r) return;
  const row = (m) => [m.merchant_id, m.name, String(m.count), m.gross, m.fees, m.refunds, m.net, m.ledger_net];
  const rows = r.merchants.map(row);
  rows.push(row(r.total));
  clear(
    out,
    el("p", { text: t("r.day", { date: r.date }) }),
    r.merchants.length
      ? barChart(
          r.merchants,
          [{ cls: "bar", values: r.merchants.map((m) => (fen(m.net) || 0) / 100) }],
          r.merchants.map((m) => m.merchant_id),
          1,
        )
      : "",
    table(
      ["r.merchant", "r.name", { key: "r.count", num: true }, { key: "r.gross", num: true }, { key: "r.fees", num: true }, { key: "r.refunds", num: true }, { key: "r.net", num: true }, { key: "r.ledger_net", num: true }],
      rows,
      (i) => (i === rows.length - 1 ? { class: "total", id: "report-total" } : {}),
    ),
    el("p", { id: "report-ties", class: r.ties_out ? "ok-text" : "bad-text", text: r.ties_out ? t("r.ties_out", { fees: r.fee_income }) : t("r.mismatch", { m: r.mismatches.join("; ") }) }),
    el("a", { href: `/admin/v1/reports/daily.csv${q}`, download: `campuspay-daily-${r.date}.csv`, id: "report-csv" }, t("r.csv")),
  );
}
