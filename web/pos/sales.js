// Today's sales at this till (GET /pos/v1/sales) and reversing the last one: the newest
// approved pay-code sale still inside the reversal window (reversal.v1 through the bridge;
// the pipeline enforces the window again).

import { api } from "/assets/api.js";
import { t, clock, errorText } from "/assets/i18n.js";
import { fen, yuan } from "/assets/money.js";
import { reasonText } from "./sale.js";

const $ = (id) => document.getElementById(id);

export class Sales {
  constructor(page) {
    this.page = page;
    this.data = null;
    this.asked = null; // the sale the cashier is asked to confirm reversing
    $("reverse-last").addEventListener("click", () => this.reverseLast());
    $("reverse-no").addEventListener("click", () => {
      $("reverse-ask").hidden = true;
    });
    $("reverse-yes").addEventListener("click", () => {
      const s = this.asked;
      $("reverse-ask").hidden = true;
      this.asked = null;
      if (s) this.page.sale.reverseSale(s.request_id, s.amount);
    });
  }

  stale() {
    if (!$("screen-sales").hidden) this.load();
  }

  async load() {
    try {
      this.data = await api("GET", "/pos/v1/sales");
      $("sales-error").textContent = "";
    } catch (e) {
      $("sales-error").textContent = errorText(e);
    }
    this.render();
  }

  // The sale "reverse the last sale" would reverse, or null.
  last() {
    const d = this.data;
    if (!d) return null;
    const since = Date.parse(d.reversible_since);
    return (
      d.sales.find(
        (s) => s.state === "approved" && s.mode === "reverse_scan" && Date.parse(s.processed_at || s.created_at) >= since,
      ) || null
    );
  }

  render() {
    const d = this.data;
    if (!d) return;
    $("sales-count").textContent = t("till.sales_count", { n: d.approved_count });
    $("sales-amount").textContent = t("till.sales_amount", { a: d.approved_amount, f: d.approved_fee });
    const list = $("sales");
    list.replaceChildren();
    for (const s of d.sales) {
      const li = document.createElement("li");
      li.dataset.state = s.state;
      const left = document.createElement("div");
      left.className = "what";
      const title = document.createElement("div");
      title.textContent = `${t("mode." + s.mode)} · ${t("state." + s.state)}`;
      const sub = document.createElement("div");
      sub.className = "muted small";
      sub.textContent = [clock(s.created_at), reasonText(s.reason)].filter(Boolean).join(" · ");
      left.append(title, sub);
      const right = document.createElement("div");
      const ok = s.state === "approved";
      right.className = "sum " + (ok ? "in" : "no");
      const total = s.amount && fen(s.amount) + (fen(s.fee) || 0);
      right.textContent = s.amount ? yuan(total) : "—";
      li.append(left, right);
      list.append(li);
    }
    $("sales-empty").hidden = d.sales.length > 0;
    $("reverse-last").disabled = !this.last();
  }

  reverseLast() {
    const s = this.last();
    if (!s) {
      $("sales-error").textContent = t("till.reverse_none");
      return;
    }
    this.asked = s;
    $("reverse-text").textContent = t("till.reverse_confirm", { a: s.amount });
    $("reverse-ask").hidden = false;
  }
}
