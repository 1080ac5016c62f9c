// A forward-scan order: POST /v1/orders with the scanned payload, then the merchant, the
// amount (typed for a static code, fixed for a dynamic one), the surcharge for this
// cardholder and the total, all before the cardholder confirms; POST /v1/orders/{id}/pay,
// with the PIN when the server asks for it. The result arrives over the event stream.

import { api, uuid4 } from "/assets/api.js";
import * as i18n from "/assets/i18n.js";
import { fen, yuan, parseAmount, feeFor, percent } from "/assets/money.js";
import { PinPad } from "/assets/pinpad.js";

const t = i18n.t;
const $ = (id) => document.getElementById(id);
const FINAL = ["approved", "declined", "reversed", "voided"];
// If no result was pushed this long after paying, read the order once (the stream may have
// been down).
const FALLBACK_MS = 15 * 1000;

// The order as the result the event stream would have pushed.
function resultOf(v) {
  return {
    type: "result.v1",
    request_id: v.request_id,
    transaction_id: v.order_id,
    mode: "forward_scan",
    status: v.status === "voided" ? "declined" : v.status,
    reason: v.reason,
    merchant_id: v.merchant_id,
    terminal_id: v.terminal_id,
    amount: v.amount,
    fee: v.fee,
    total: v.total,
    balance_after: v.balance_after,
  };
}

export class OrderFlow {
  constructor(ctx) {
    this.ctx = ctx;
    this.view = null;
    this.fallback = null;
    this.pad = new PinPad($("pin-pad"), (pin) => this.pay(pin));
    $("order-amount").addEventListener("input", () => this.update());
    $("order-pay").addEventListener("click", () => this.pay());
    $("order-cancel").addEventListener("click", () => this.cancel());
    $("pin-cancel").addEventListener("click", () => {
      this.closePin();
      $("order-pay").disabled = false;
      $("order-error").textContent = "";
    });
  }

  // Opens the order for a scanned payload; false (with the reason on the scan screen) if the
  // server refuses it.
  async create(qr) {
    try {
      const view = await api("POST", "/v1/orders", { request_id: uuid4(), qr });
      this.open(view);
      return true;
    } catch (e) {
      if (e.status === 401) {
        this.ctx.signedOut();
        return false;
      }
      $("scan-status").textContent = i18n.errorText(e);
      return false;
    }
  }

  open(view) {
    this.view = view;
    clearTimeout(this.fallback);
    $("order-merchant").textContent = view.merchant_name;
    $("order-terminal").textContent = view.terminal_id;
    const fixed = view.amount !== null;
    $("order-amount-fixed").textContent = fixed ? view.amount : "";
    $("order-amount-row").hidden = !fixed;
    $("order-amount-field").hidden = fixed;
    $("order-amount").value = "";
    $("order-error").textContent = "";
    $("order-pay").disabled = !fixed;
    this.update();
    this.ctx.show("order");
    if (!fixed) $("order-amount").focus();
  }

  amountFen() {
    if (!this.view) return null;
    return this.view.amount !== null ? fen(this.view.amount) : parseAmount($("order-amount").value);
  }

  update() {
    const v = this.view;
    if (!v) return;
    const a = this.amountFen();
    const fee = a === null ? null : feeFor(a, v.fee_rate);
    const total = a === null || fee === null ? null : a + fee;
    $("order-fee-label").textContent = t("order.fee_rate", { rate: percent(v.fee_rate) });
    $("order-fee").textContent = fee === null ? "—" : yuan(fee);
    $("order-total").textContent = total === null ? "—" : yuan(total);
    const me = this.ctx.state.me;
    const balance = me ? fen(me.balance) : null;
    $("order-balance").textContent = me ? me.balance : "—";
    const typed = $("order-amount").value.trim() !== "";
    let note = "";
    if (v.amount === null && typed && a === null) note = t("order.bad_amount");
    else if (total !== null && balance !== null && total > balance) note = t("order.low_balance");
    $("order-error").textContent = note;
    $("order-pay").disabled = a === null;
  }

  relabel() {
    this.update();
  }

  cancel() {
    this.view = null;
    clearTimeout(this.fallback);
    this.closePin();
    this.ctx.show("scan");
  }

  askPin() {
    const v = this.view;
    const a = this.amountFen();
    const total = a === null ? "—" : yuan(a + feeFor(a, v.fee_rate));
    $("pin-for").textContent = t("pin.for", { merchant: v.merchant_name, total });
    $("pin-error").textContent = "";
    this.pad.reset();
    $("pin-sheet").hidden = false;
  }

  pinError(text) {
    $("pin-error").textContent = text;
    this.pad.reset();
  }

  closePin() {
    $("pin-sheet").hidden = true;
    this.pad.reset();
  }

  async pay(pin) {
    const v = this.view;
    const a = this.amountFen();
    if (!v || a === null) {
      $("order-error").textContent = t("order.bad_amount");
      return;
    }
    const body = {};
    if (v.amount === null) body.amount = yuan(a);
    if (pin) body.pin = pin;
    $("order-pay").disabled = true;
    $("order-error").textContent = t("order.processing");
    let paid;
    try {
      paid = await api("POST", `/v1/orders/${v.order_id}/pay`, body);
    } catch (e) {
      if (e.status === 401) return this.ctx.signedOut();
      if (e.code === "pin_required") return this.askPin();
      if (e.code === "pin_invalid") {
        const m = /(\d+) more wrong/.exec(e.message || "");
        return this.pinError(m ? t("pin.wrong_left", { n: m[1] }) : t("pin.wrong"));
      }
      if (e.code === "pin_locked") {
        const m = /unlocks at (\S+)/.exec(e.message || "");
        return this.pinError(t("pin.locked", { until: m ? i18n.dateTime(m[1]) : "—" }));
      }
      this.closePin();
      $("order-error").textContent = i18n.errorText(e);
      $("order-pay").disabled = false;
      return;
    }
    this.closePin();
    if (!this.view || this.view.order_id !== paid.order_id) return; // finished meanwhile
    this.view = paid;
    if (FINAL.includes(paid.status)) {
      this.ctx.onResult(resultOf(paid));
      return;
    }
    $("order-error").textContent = t("order.waiting");
    this.fallback = setTimeout(() => this.check(paid.order_id), FALLBACK_MS);
  }

  async check(id) {
    if (!this.view || this.view.order_id !== id) return;
    try {
      const v = await api("GET", `/v1/orders/${id}`);
      if (FINAL.includes(v.status)) this.ctx.onResult(resultOf(v));
    } catch (_) {
      /* still waiting: the stream or the next look will tell */
    }
  }

  // A pushed result: if it is this order's, the order is over (the result card shows it).
  // Returns what the card should say of the merchant, or null when it is not ours.
  onResult(r) {
    const v = this.view;
    if (!v || r.transaction_id !== v.order_id) return null;
    clearTimeout(this.fallback);
    this.view = null;
    this.closePin();
    this.ctx.show("pay");
    return { merchant_name: v.merchant_name };
  }
}
