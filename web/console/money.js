// Fee rules (list and add, by identity and optionally merchant) and the subsidy import: a file
// upload, its preview row by row (the server's dry run: nothing credited), then the import
// itself after a confirmation, with its result per row.

import { api } from "/assets/api.js";
import { t, dateTime } from "/assets/i18n.js";
import { percent } from "/assets/money.js";
import { el, clear, card, table, act, confirmAction, showInfo } from "./ui.js";
import { ApiError } from "/assets/api.js";

const IDENTITIES = ["student", "staff", "temporary", "external"];
const MAX_FILE_BYTES = 8 << 20;
let root = null;

export function show(section) {
  root = section;
  load();
}

async function load() {
  const rules = await act(null, () => api("GET", "/admin/v1/fee-rules"));
  const addRule = el(
    "form",
    { class: "inline", id: "add-fee" },
    el("label", {}, t("f.identity"), el("select", { name: "identity" }, IDENTITIES.map((i) => el("option", { value: i }, t("identity." + i))))),
    el("label", {}, t("f.rate"), el("input", { name: "rate", required: true, placeholder: "0.15", maxlength: 6 })),
    el("label", {}, t("f.merchant"), el("input", { name: "merchant_id", placeholder: t("f.all_merchants"), maxlength: 32 })),
    el("button", { type: "submit", class: "primary", i18n: "f.add" }),
  );
  addRule.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = new FormData(addRule);
    const body = { identity: f.get("identity"), rate: f.get("rate").trim() };
    if (f.get("merchant_id").trim()) body.merchant_id = f.get("merchant_id").trim();
    act(addRule.querySelector("button"), async () => {
      if (!(await confirmAction(t("f.confirm", { identity: t("identity." + body.identity), rate: percent(body.rate), merchant: body.merchant_id || t("f.all_merchants") })))) return;
      await api("POST", "/admin/v1/fee-rules", body);
      showInfo(t("f.added"));
      await load();
    });
  });
  const ruleTable = rules
    ? table(
        ["f.identity", "f.merchant", "f.rate", "f.from", "f.current"],
        rules.rules.map((r) => [t("identity." + r.identity), r.merchant_id || t("f.all_merchants"), percent(r.rate), dateTime(r.effective_from), r.current ? "✓" : ""]),
      )
    : "";
  clear(root, card(el("h2", { i18n: "f.title" }), addRule, ruleTable), subsidyCard());
}

function upload(batch, text, dryRun) {
  const q = `?batch=${encodeURIComponent(batch)}${dryRun ? "&dry_run=true" : ""}`;
  return fetch(`/admin/v1/subsidies${q}`, {
    method: "POST",
    headers: { "Content-Type": "text/csv", "X-CampusPay-CSRF": "1", Accept: "application/json" },
    body: text,
    credentials: "same-origin",
    cache: "no-store",
  }).then(async (resp) => {
    const data = await resp.json().catch(() => null);
    if (!resp.ok) throw new ApiError(resp.status, (data && data.code) || "http_" + resp.status, data && data.message, data);
    return data;
  }, (e) => {
    throw new ApiError(0, "network", String(e));
  });
}

// The file's lines beside the report: each line credited, already credited, or refused (why).
function perRow(text, report, done) {
  const refused = new Map(report.rejected.map((r) => [r.line, r.why]));
  const rows = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const n = i + 1;
    const s = line.trim();
    if (!s || s.startsWith("#") || /^(user_id|row_id)\b/.test(s)) return;
    const why = refused.get(n);
    rows.push({ n, line, why });
  });
  return table(
    [{ key: "s.line", num: true }, "s.row", "s.outcome"],
    rows.map((r) => [String(r.n), r.line, r.why ? `${t("s.refused")}: ${r.why}` : t(done ? "s.ok_done" : "s.ok_preview")]),
    (i) => ({ class: rows[i].why ? "rejected" : "accepted" }),
  );
}

function summary(report, done) {
  return el(
    "p",
    { id: done ? "subsidy-result" : "subsidy-preview-summary" },
    t(done ? "s.summary_done" : "s.summary_preview", {
      rows: report.rows,
      credited: report.credited,
      already: report.already_credited,
      total: report.total_credited,
      refused: report.rejected.length,
    }),
  );
}

function subsidyCard() {
  const out = el("div", { id: "subsidy-out" });
  const form = el(
    "form",
    { class: "inline", id: "subsidy" },
    el("label", {}, t("s.batch"), el("input", { name: "batch", required: true, maxlength: 100, placeholder: "2026-11 meal subsidy" })),
    el("label", {}, t("s.file"), el("input", { name: "file", type: "file", accept: ".csv,text/csv,text/plain", required: true, id: "subsidy-file" })),
    el("button", { type: "submit", class: "primary", i18n: "s.preview" }),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    const file = f.get("file");
    const batch = f.get("batch").trim();
    act(form.querySelector("button"), async () => {
      if (!file || file.size > MAX_FILE_BYTES) throw Object.assign(new Error(t("s.too_big")), { code: "subsidy_file" });
      const text = await file.text();
      const preview = await upload(batch, text, true);
      const go = el("button", { type: "button", class: "primary", id: "subsidy-import", i18n: "s.import" });
      go.addEventListener("click", () =>
        act(go, async () => {
          if (!(await confirmAction(t("s.confirm", { batch, credited: preview.credited, total: preview.total_credited })))) return;
          const done = await upload(batch, text, false);
          clear(out, el("h2", { i18n: "s.result" }), summary(done, true), perRow(text, done, true));
        }),
      );
      clear(out, el("h2", { i18n: "s.preview_title" }), summary(preview, false), perRow(text, preview, false), preview.credited > 0 ? go : "");
    });
  });
  return card(el("h2", { i18n: "s.title" }), el("p", { class: "muted small", i18n: "s.format" }), form, out);
}
