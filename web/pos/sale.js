// One sale at a time: a reverse-scan charge, a dynamic QR code waiting to be paid, or the
// reversal of the last sale; and the answer shown big over the page.
//
// The POS timeout rules of the contract (README, "Writing a POS", 6), as `campuspay pos`
// follows them: no answer → send the same request again (same request_id: never charged
// twice); still none → ask (query.v1), which answers with the result or with
// query_status.v1 (`processing`: wait on; `unknown`: not seen, so send it once more); still
// none → cancel it (reversal.v1: nothing is charged, and a late copy cannot charge).

import { api, uuid4 } from "/assets/api.js";
import { t, has, errorText } from "/assets/i18n.js";
import { drawQr } from "/assets/qr.js";

const $ = (id) => document.getElementById(id);
const RESEND_AFTER_MS = 8000;
const QUERY_AFTER_MS = 16000;
const REVERSE_AFTER_MS = 40000;
// While the cardholder confirms on the phone, ask now and then in case the answer was missed.
const PENDING_QUERY_EVERY_MS = 30000;
const QR_SIZE = 320;

// The cashier's words for a decline reason (the shared ones speak to the cardholder).
export function reasonText(code) {
  if (!code) return "";
  if (has("pos_reason." + code)) return t("pos_reason." + code);
  if (has("reason." + code)) return t("reason." + code);
  return code;
}

export class Sale {
  constructor(page) {
    this.page = page;
    this.current = null; // {kind: "scan"|"qr"|"reversal", requestId, amount, code, ...}
    this.timers = [];
    this.shown = null; // the answer on screen: {status, reason, amount, fee, total}
    this.qrTimer = null;
  }

  get busy() {
    return !!this.current || !$("result").hidden;
  }

  get done() {
    return !this.current && !$("result").hidden;
  }

  clearTimers() {
    for (const x of this.timers) clearTimeout(x);
    this.timers = [];
  }

  after(ms, f) {
    this.timers.push(setTimeout(f, ms));
  }

  async post(path, body) {
    try {
      await api("POST", path, body);
      return true;
    } catch (e) {
      if (e.status === 401) {
        this.page.signedOut();
        return false;
      }
      // Unreachable or unavailable: the timeout rules send it again.
      if (e.offline || e.status === 503) return true;
      this.verdict({ status: "declined", reasonText: errorText(e) });
      this.current = null;
      return false;
    }
  }

  // ---- a reverse-scan charge --------------------------------------------------------------

  async start(code, amount) {
    const requestId = uuid4();
    this.current = { kind: "scan", requestId, code, amount };
    this.verdict({ status: "sending", amount });
    const body = { request_id: requestId, payment_code: code, amount };
    if (!(await this.post("/pos/v1/scans", body))) return;
    this.after(RESEND_AFTER_MS, () => {
      this.note(t("till.resending"));
      this.post("/pos/v1/scans", body);
    });
    this.after(QUERY_AFTER_MS, () => this.query());
    this.after(REVERSE_AFTER_MS, () => this.reverse(requestId));
  }

  query() {
    const c = this.current;
    if (!c) return;
    this.note(t("till.querying"));
    this.post("/pos/v1/queries", { request_id: c.requestId });
  }

  reverse(requestId) {
    if (!this.current) return;
    this.note(t("till.reversing"));
    this.post("/pos/v1/reversals", { request_id: requestId });
  }

  // ---- a dynamic QR code --------------------------------------------------------------------

  async dynamicQr(amount) {
    const requestId = uuid4();
    this.current = { kind: "qr", requestId, amount, issued: false };
    $("qr-amount").textContent = amount;
    $("qr-left").textContent = t("till.qr_waiting");
    $("qr").dataset.payload = "";
    this.page.show("qr");
    if (!(await this.post("/pos/v1/dynamic-qr", { request_id: requestId, amount }))) {
      this.page.show("charge");
      return;
    }
    // Nothing issued: asking again is harmless (the same request_id gets the same code).
    this.after(RESEND_AFTER_MS, () => {
      if (this.current && this.current.kind === "qr" && !this.current.issued) {
        this.post("/pos/v1/dynamic-qr", { request_id: requestId, amount });
      }
    });
  }

  showQr(payload) {
    const canvas = $("qr");
    drawQr(canvas, payload, "Byte", QR_SIZE);
    canvas.dataset.payload = payload;
  }

  countDown(expiresAt) {
    clearInterval(this.qrTimer);
    const tick = () => {
      const left = Math.ceil((Date.parse(expiresAt) - Date.now()) / 1000);
      if (left <= 0) {
        clearInterval(this.qrTimer);
        this.current = null;
        this.page.show("charge");
        this.verdict({ status: "declined", reasonText: t("till.qr_expired") });
        return;
      }
      $("qr-left").textContent = t("till.qr_left", { s: left });
    };
    tick();
    this.qrTimer = setInterval(tick, 1000);
  }

  cancelQr() {
    clearInterval(this.qrTimer);
    this.clearTimers();
    this.current = null;
    this.page.show("charge");
  }

  // ---- reversing the last sale ----------------------------------------------------------------

  async reverseSale(requestId, amount) {
    this.current = { kind: "reversal", requestId, amount };
    this.verdict({ status: "sending", amount });
    if (!(await this.post("/pos/v1/reversals", { request_id: requestId }))) return;
    this.after(RESEND_AFTER_MS, () => this.post("/pos/v1/reversals", { request_id: requestId }));
  }

  // ---- answers ------------------------------------------------------------------------------

  // A message pushed on the till's queue: `kind` is the SSE event (result, query_status,
  // dynamic_qr).
  answer(kind, msg) {
    const c = this.current;
    if (!c) return;
    if (c.kind === "qr") return this.qrAnswer(kind, msg);
    if (msg.request_id !== c.requestId) return;
    if (kind === "result") {
      if (msg.status === "pending") {
        this.clearTimers();
        this.verdict({ status: "pending", amount: msg.amount, fee: msg.fee, total: msg.total });
        const again = () => {
          this.post("/pos/v1/queries", { request_id: c.requestId });
          this.after(PENDING_QUERY_EVERY_MS, again);
        };
        this.after(PENDING_QUERY_EVERY_MS, again);
        return;
      }
      this.finish(msg);
    } else if (kind === "query_status") {
      if (msg.state === "unknown") {
        // Not seen (yet: a query can overtake its request in a backlog). The contract's
        // answer: send it again, the same request_id; if still nothing, the reversal timer
        // cancels it, and a late copy then cannot charge.
        c.unknown = true;
        if (c.kind === "scan") this.post("/pos/v1/scans", { request_id: c.requestId, payment_code: c.code, amount: c.amount });
      } else if (msg.state === "rejected") {
        this.clearTimers();
        this.current = null;
        this.verdict({ status: "declined", reason: msg.reason });
        this.page.onDone();
      }
      // processing: its result follows; the reversal timer stays as the last resort.
    }
  }

  qrAnswer(kind, msg) {
    const c = this.current;
    if (kind === "dynamic_qr" && msg.request_id === c.requestId && !c.issued) {
      if (msg.status !== "issued" || !msg.payload) {
        this.current = null;
        this.page.show("charge");
        this.verdict({ status: "declined", reason: msg.reason });
        return;
      }
      c.issued = true;
      c.reference = msg.reference;
      this.clearTimers();
      this.showQr(msg.payload);
      this.countDown(msg.expires_at);
      return;
    }
    // A forward-scan result of this amount at this till: if the order behind it is the one
    // that paid the code shown (a printed code of the till may be paid meanwhile), it is ours.
    if (kind === "result" && c.issued && msg.mode === "forward_scan" && msg.amount === c.amount && msg.status !== "pending") {
      this.paidBy(c, msg);
    }
  }

  async paidBy(c, msg) {
    let paid;
    try {
      paid = await api("GET", "/pos/v1/dynamic-qr/" + encodeURIComponent(c.reference));
    } catch (_) {
      return; // the durable copy: today's sales
    }
    if (this.current !== c || paid.order_id !== msg.transaction_id) return;
    clearInterval(this.qrTimer);
    this.page.show("charge");
    this.finish(msg);
  }

  finish(msg) {
    const c = this.current;
    this.clearTimers();
    this.current = null;
    const unknown = c && c.unknown && msg.reason === "voided";
    this.verdict({
      status: msg.status,
      reason: msg.reason,
      reasonText: unknown ? t("till.unknown") : null,
      amount: msg.amount,
      fee: msg.fee,
      total: msg.total,
      requestId: msg.request_id,
    });
    if (msg.status === "approved") this.page.clearAmount();
    this.page.onDone();
  }

  // ---- the answer on screen -----------------------------------------------------------------

  note(text) {
    if (this.shown && this.shown.status === "sending") $("result-reason").textContent = text;
  }

  verdict(v) {
    this.shown = v;
    this.relabel();
    $("result").hidden = false;
  }

  relabel() {
    const v = this.shown;
    if (!v) return;
    const card = document.querySelector("#result .result-card");
    card.dataset.status = v.status;
    $("result").dataset.status = v.status;
    const titles = {
      approved: "till.approved",
      declined: "till.declined",
      reversed: "till.reversed",
      pending: "till.pending",
      sending: "till.sending",
    };
    $("result-title").textContent = t(titles[v.status] || "till.declined");
    $("result-reason").textContent =
      v.reasonText || reasonText(v.reason) || (v.status === "pending" ? t("till.pending_text") : "");
    $("result-reason").dataset.reason = v.reason || "";
    $("result-amount").textContent = v.amount || "—";
    $("result-fee").textContent = v.fee || "—";
    $("result-total").textContent = v.total || "—";
    const final = ["approved", "declined", "reversed"].includes(v.status);
    $("result-next").hidden = !final;
  }

  close() {
    if (this.current) return;
    this.shown = null;
    $("result").hidden = true;
  }
}
