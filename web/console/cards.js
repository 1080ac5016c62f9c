// Cards: search by user id or name; a card's view with freeze / unfreeze, top-up (confirmed),
// limits, PIN unlock and reset, and its recent transactions with refund (confirmed).

import { api, uuid4 } from "/assets/api.js";
import { t, reason, dateTime } from "/assets/i18n.js";
import { parseAmount, yuan } from "/assets/money.js";
import { el, clear, card, table, act, confirmAction, showInfo } from "./ui.js";

let root = null;
let results = null;
let view = null;
let lastQuery = "";

export function show(section) {
  root = section;
  results = el("div", { id: "card-results" });
  view = el("div", { id: "card-view" });
  const search = el(
    "form",
    { class: "inline", id: "card-search" },
    el("label", {}, t("c.search"), el("input", { name: "q", required: true, maxlength: 100, value: lastQuery })),
    el("button", { type: "submit", class: "primary", i18n: "c.find" }),
  );
  search.addEventListener("submit", (ev) => {
    ev.preventDefault();
    lastQuery = new FormData(search).get("q").trim();
    find(search.querySelector("button"));
  });
  clear(root, card(search, results), view);
  if (lastQuery) find(null);
}

async function find(button) {
  const r = await act(button, () => api("GET", `/admin/v1/cards?q=${encodeURIComponent(lastQuery)}`));
  if (!r) return;
  clear(
    results,
    r.cards.length
      ? table(
          ["c.user", "c.name", "c.identity", "c.status", { key: "c.balance", num: true }, ""],
          r.cards.map((c) => {
            const open = el("button", { type: "button", class: "link open-card", "data-user": c.user_id, i18n: "c.open" });
            open.addEventListener("click", () => openCard(c.user_id));
            return [c.user_id, c.name, t("identity." + c.identity), t("c.status_" + c.status), c.balance, open];
          }),
        )
      : el("p", { class: "muted", i18n: "c.none" }),
  );
}

function button(key, cls, f) {
  const b = el("button", { type: "button", class: cls, i18n: key });
  b.addEventListener("click", () => act(b, f));
  return b;
}

export async function openCard(user) {
  const c = await act(null, () => api("GET", `/admin/v1/cards/${encodeURIComponent(user)}`));
  if (!c) return;
  const path = `/admin/v1/cards/${encodeURIComponent(user)}`;
  const again = () => openCard(user);
  const frozen = c.status === "frozen";
  const actions = el(
    "div",
    { class: "row" },
    frozen
      ? button("c.unfreeze", "unfreeze", async () => {
          await api("POST", `${path}/unfreeze`);
          showInfo(t("c.unfrozen", { user }));
          await again();
        })
      : button("c.freeze", "freeze", async () => {
          if (!(await confirmAction(t("c.confirm_freeze", { user })))) return;
          const r = await api("POST", `${path}/freeze`);
          showInfo(t("c.frozen", { user, n: r.codes_revoked }));
          await again();
        }),
    button("c.pin_unlock", "pin-unlock", async () => {
      await api("POST", `${path}/pin/unlock`);
      showInfo(t("c.pin_unlocked", { user }));
    }),
    button("c.pin_reset", "pin-reset", async () => {
      const pin = prompt(t("c.pin_prompt"));
      if (pin === null) return;
      await api("PUT", `${path}/pin`, { pin: pin.trim() });
      showInfo(t("c.pin_set", { user }));
    }),
  );
  const topup = el(
    "form",
    { class: "inline", id: "topup" },
    el("label", {}, t("c.topup_amount"), el("input", { name: "amount", required: true, inputmode: "decimal" })),
    el("button", { type: "submit", class: "primary", i18n: "c.topup" }),
  );
  topup.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const fen = parseAmount(new FormData(topup).get("amount"));
    act(topup.querySelector("button"), async () => {
      if (fen === null) throw Object.assign(new Error(""), { code: "invalid_amount" });
      if (!(await confirmAction(t("c.confirm_topup", { amount: yuan(fen), user })))) return;
      const r = await api("POST", `${path}/topup`, { amount: yuan(fen), request_id: uuid4() });
      showInfo(t("c.topped_up", { amount: r.amount, balance: r.balance }));
      await again();
    });
  });
  const limits = el(
    "form",
    { class: "inline", id: "limits" },
    ...["per_txn", "daily", "password_free"].map((k) => el("label", {}, t("c.limit_" + k), el("input", { name: k, inputmode: "decimal", placeholder: "—" }))),
    el("button", { type: "submit", i18n: "c.set_limits" }),
  );
  limits.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = new FormData(limits);
    const body = {};
    for (const k of ["per_txn", "daily", "password_free"]) if (f.get(k).trim()) body[k] = f.get(k).trim();
    act(limits.querySelector("button"), async () => {
      const l = await api("PUT", `${path}/limits`, body);
      limitsShown.textContent = JSON.stringify(l);
    });
  });
  const limitsShown = el("p", { class: "muted small", id: "limits-now" });
  api("PUT", `${path}/limits`, {})
    .then((l) => (limitsShown.textContent = `${t("c.limit_per_txn")} ${l.per_txn_limit} · ${t("c.limit_daily")} ${l.daily_limit} · ${t("c.limit_password_free")} ${l.password_free_limit}`))
    .catch(() => {});
  const tx = c.recent.map((x) => {
    const refund =
      x.state === "approved"
        ? button("c.refund", "refund", async () => {
            const amount = prompt(t("c.refund_prompt", { amount: x.amount }), x.amount);
            if (amount === null) return;
            const fen = parseAmount(amount);
            if (fen === null) throw Object.assign(new Error(""), { code: "invalid_amount" });
            if (!(await confirmAction(t("c.confirm_refund", { amount: yuan(fen), merchant: x.merchant_name || x.merchant_id })))) return;
            const r = await api("POST", "/admin/v1/refunds", {
              transaction_id: x.transaction_id,
              amount: yuan(fen),
              request_id: uuid4(),
              reason: "console",
            });
            showInfo(t("c.refunded", { amount: r.amount, remaining: r.remaining }));
            await again();
          })
        : "";
    return [dateTime(x.created_at), x.merchant_name || x.merchant_id, x.terminal_id, x.state + (x.reason ? ` · ${reason(x.reason)}` : ""), x.amount || "—", x.fee || "—", refund];
  });
  clear(
    view,
    card(
      el("h2", { id: "card-title", text: `${c.name} (${c.user_id})` }),
      el(
        "p",
        {},
        el("span", { class: frozen ? "tag bad" : "tag", id: "card-status", text: t("c.status_" + c.status) }),
        " ",
        t("identity." + c.identity),
        " · ",
        t("c.balance"),
        " ",
        el("strong", { id: "card-balance", text: c.balance }),
      ),
      actions,
      topup,
      limits,
      limitsShown,
    ),
    card(
      el("h2", { i18n: "c.recent" }),
      tx.length
        ? table(["c.when", "c.merchant", "c.terminal", "c.state", { key: "c.amount", num: true }, { key: "c.fee", num: true }, ""], tx)
        : el("p", { class: "muted", i18n: "c.no_tx" }),
    ),
  );
}
