// Confirming a large reverse-scan payment on the phone: the POS waits (`pending`,
// `user_confirming`) while the cardholder sees the merchant, amount, surcharge and total and
// enters the PIN, or declines. Requests arrive as `event: confirmation` on the event stream
// (confirmation_request.v1) and, for a page opened later or a stream that reconnected (nothing is
// replayed on it), from GET /v1/confirmations. A server without confirmations answers that route
// 404: then there is simply nothing to confirm. A request ends with its final result (pushed,
// or seen in the card's recent payments when the push was missed).

import { api } from "/assets/api.js";
import * as i18n from "/assets/i18n.js";
import { PinPad } from "/assets/pinpad.js";

const t = i18n.t;
const $ = (id) => document.getElementById(id);
// Requests waiting behind the one shown (a till asks again on a retry; more would be noise).
const QUEUE_MAX = 10;
// How long a message on the sheet stays before it closes by itself.
const LINGER_MS = 2500;
// Transaction states after which nothing waits for the cardholder.
const FINAL = ["approved", "declined", "reversed", "voided"];

function valid(c) {
  return (
    c &&
    typeof c.transaction_id === "string" &&
    typeof c.amount === "string" &&
    typeof c.total === "string" &&
    typeof c.expires_at === "string"
  );
}

export class Confirmations {
  constructor(ctx) {
    this.ctx = ctx;
    this.queue = [];
    this.current = null;
    this.timer = null;
    this.closing = null;
    this.pad = new PinPad($("confirm-pad"), (pin) => this.confirm(pin));
    $("confirm-decline").addEventListener("click", () => this.decline());
  }

  async load() {
    let found;
    try {
      found = await api("GET", "/v1/confirmations");
    } catch (_) {
      return; // 404 (no such route here), offline, signed out: nothing to confirm now
    }
    for (const c of (found && found.confirmations) || []) this.add(c);
  }

  add(c) {
    if (!valid(c)) return;
    const id = c.transaction_id;
    if ((this.current && this.current.transaction_id === id) || this.queue.some((q) => q.transaction_id === id)) {
      return;
    }
    if (Date.parse(c.expires_at) <= Date.now()) return;
    if (this.queue.length >= QUEUE_MAX) this.queue.shift();
    this.queue.push(c);
    if (!this.current) this.next();
  }

  next() {
    clearInterval(this.timer);
    clearTimeout(this.closing);
    this.current = this.queue.shift() || null;
    // Set once the server accepted the PIN: the payment is the server's to finish then, and
    // the countdown no longer applies.
    this.sent = false;
    if (!this.current) {
      $("confirm-sheet").hidden = true;
      return;
    }
    $("confirm-error").textContent = "";
    $("confirm-decline").disabled = false;
    this.pad.reset();
    this.render();
    $("confirm-sheet").hidden = false;
    this.timer = setInterval(() => this.tick(), 1000);
  }

  render() {
    const c = this.current;
    if (!c) return;
    const merchant = c.merchant_name || this.ctx.merchantName(c.merchant_id);
    $("confirm-text").textContent = t("confirm.text", { merchant });
    $("confirm-amount").textContent = c.amount;
    $("confirm-fee").textContent = c.fee ?? "—";
    $("confirm-total").textContent = c.total;
    if (this.sent) {
      $("confirm-left").textContent = "";
      $("confirm-error").textContent = t("confirm.sent");
    } else {
      this.tick();
    }
  }

  relabel() {
    this.render();
  }

  tick() {
    const c = this.current;
    if (!c || this.sent) return;
    const left = Math.ceil((Date.parse(c.expires_at) - Date.now()) / 1000);
    if (left <= 0) {
      this.finish(t("confirm.timeout"));
      return;
    }
    $("confirm-left").textContent = t("confirm.left", { s: left });
  }

  // Shows `text` on the sheet for a moment, then the next request (or nothing).
  finish(text) {
    clearInterval(this.timer);
    $("confirm-error").textContent = text;
    this.pad.busy = true;
    $("confirm-decline").disabled = true;
    clearTimeout(this.closing);
    this.closing = setTimeout(() => this.next(), LINGER_MS);
  }

  async confirm(pin) {
    const c = this.current;
    if (!c) return;
    try {
      await api("POST", `/v1/confirmations/${encodeURIComponent(c.transaction_id)}/confirm`, { pin });
      // 202: confirmed in time; the result follows over the stream (resolved() closes the
      // sheet). Settling may take past the deadline: the sheet must not say it expired.
      if (this.current !== c) return;
      this.sent = true;
      clearInterval(this.timer);
      $("confirm-left").textContent = "";
      $("confirm-error").textContent = t("confirm.sent");
      $("confirm-decline").disabled = true;
    } catch (e) {
      if (this.current !== c) return;
      if (e.status === 401) return this.ctx.signedOut();
      if (e.code === "pin_invalid") {
        const n = e.body && e.body.tries_left;
        $("confirm-error").textContent = Number.isInteger(n) ? t("pin.wrong_left", { n }) : t("pin.wrong");
        this.pad.reset();
        return;
      }
      if (e.code === "pin_locked") {
        const until = e.body && e.body.locked_until;
        this.finish(t("pin.locked", { until: until ? i18n.dateTime(until) : "—" }));
        return;
      }
      if (e.code === "not_awaiting_confirmation") {
        const timedOut = e.body && e.body.reason === "confirmation_timeout";
        this.finish(timedOut ? t("confirm.timeout") : t("confirm.gone"));
        return;
      }
      if (e.status === 404) {
        this.finish(t("confirm.gone"));
        return;
      }
      $("confirm-error").textContent = i18n.errorText(e);
      this.pad.reset();
    }
  }

  async decline() {
    const c = this.current;
    if (!c) return;
    $("confirm-decline").disabled = true;
    try {
      await api("POST", `/v1/confirmations/${encodeURIComponent(c.transaction_id)}/decline`);
      // The declined result may have closed this request's sheet already.
      if (this.current === c) this.finish(t("reason.user_declined"));
    } catch (e) {
      if (e.status === 401) return this.ctx.signedOut();
      if (e.status === 404 || e.status === 409) return this.finish(t("confirm.gone"));
      $("confirm-error").textContent = i18n.errorText(e);
      $("confirm-decline").disabled = false;
    }
  }

  // The card's recent payments (GET /v1/me): a request whose payment is final there needs no
  // confirming any more, also when its pushed result was missed.
  settled(recent) {
    for (const tx of recent || []) {
      if (tx && FINAL.includes(tx.state)) this.resolved(tx.transaction_id);
    }
  }

  // A final result for `txId` arrived: its request needs no confirming any more. Returns the
  // request (or null when none was shown or waiting here).
  resolved(txId) {
    const shown = this.current && this.current.transaction_id === txId ? this.current : null;
    const asked = shown || this.queue.find((q) => q.transaction_id === txId) || null;
    this.queue = this.queue.filter((q) => q.transaction_id !== txId);
    if (shown) this.next();
    return asked;
  }
}
