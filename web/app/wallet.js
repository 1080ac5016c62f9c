// The cardholder's wallet at /app: the payment code (反扫), scanning a merchant's code (正扫),
// results pushed over server-sent events, and the history. It talks only to /v1 (and /signout)
// with the session cookie; everything about money is decided by the server.

import { api } from "/assets/api.js";
import * as i18n from "/assets/i18n.js";
import { t } from "/assets/i18n.js";
import { fen, yuan } from "/assets/money.js";
import { drawQr } from "/assets/qr.js";
import { CodeStore } from "./codes.js";
import { Scanner } from "./scan.js";
import { OrderFlow } from "./order.js";
import { Confirmations } from "./confirm.js";

const $ = (id) => document.getElementById(id);
const ME_KEY = "campuspay.me";
const SCREENS = ["signedout", "pay", "scan", "order", "history"];
// Results remembered to drop repeats (a result may be delivered more than once).
const RESULTS_SEEN_MAX = 200;
// How often the card (balance, frozen, codes left) is re-read while the page is visible;
// results themselves are pushed.
const CARD_REFRESH_MS = 60 * 1000;

const state = {
  me: null,
  codes: null,
  online: navigator.onLine,
  events: null,
  seen: [],
  fetching: false,
  codeError: null,
  codeErrorAt: 0,
  screen: "pay",
  started: false,
};
// After a failed fetch of codes, wait this long before trying again by itself.
const CODE_RETRY_MS = 30 * 1000;

const ctx = {
  state,
  show,
  showResult,
  onResult,
  refresh: () => refresh(),
  signedOut,
  merchantName,
};

const scanner = new Scanner(ctx);
const order = new OrderFlow(ctx);
const confirmations = new Confirmations(ctx);
ctx.scanner = scanner;
ctx.order = order;

// ---- screens ---------------------------------------------------------------------------

function show(screen) {
  state.screen = screen;
  for (const s of SCREENS) $("screen-" + s).hidden = s !== screen;
  const tab = screen === "order" ? "scan" : screen;
  for (const b of document.querySelectorAll("#tabs button")) {
    if (b.dataset.tab === tab) b.setAttribute("aria-current", "page");
    else b.removeAttribute("aria-current");
  }
  if (screen === "scan") scanner.start();
  else scanner.stop();
}

function banner(text) {
  $("banner").textContent = text || "";
  $("banner").hidden = !text;
}

function setOnline(v) {
  state.online = v;
  banner(v ? "" : t("offline"));
}

// ---- the card ----------------------------------------------------------------------------

function renderCard() {
  const me = state.me;
  if (!me) return;
  $("name").textContent = me.name;
  $("identity").textContent = t("identity." + me.identity);
  $("identity").hidden = false;
  $("frozen-tag").hidden = me.status !== "frozen";
  $("balance").textContent = me.balance;
  document.title = `${t("app.title")} · ${me.name}`;
  const pending = $("result").dataset.merchantId;
  if (pending) $("result-merchant").textContent = merchantName(pending);
  renderHistory();
}

function merchantName(merchantId) {
  const me = state.me;
  const hit = me && [...me.recent, ...(me.refunds || [])].find((x) => x.merchant_id === merchantId && x.merchant_name);
  return hit ? hit.merchant_name : merchantId;
}

function historyItem(what, when, sum, cls) {
  const li = document.createElement("li");
  const left = document.createElement("div");
  left.className = "what";
  const title = document.createElement("div");
  title.textContent = what;
  const sub = document.createElement("div");
  sub.className = "muted small";
  sub.textContent = when;
  left.append(title, sub);
  const right = document.createElement("div");
  right.className = "sum " + cls;
  right.textContent = sum;
  li.append(left, right);
  return li;
}

function renderHistory() {
  const me = state.me;
  const list = $("history");
  list.replaceChildren();
  for (const tx of me.recent) {
    const total = tx.amount && tx.fee ? fen(tx.amount) + fen(tx.fee) : fen(tx.amount);
    const mode = t(tx.mode === "reverse_scan" ? "history.reverse" : "history.forward");
    let status = t("state." + tx.state);
    if (tx.reason) status += " · " + i18n.reason(tx.reason);
    const when = `${i18n.dateTime(tx.created_at)} · ${mode} · ${status}`;
    const cls = tx.state === "approved" ? "out" : "no";
    list.append(historyItem(tx.merchant_name || tx.merchant_id, when, total === null ? "—" : "-" + yuan(total), cls));
  }
  $("history-empty").hidden = me.recent.length > 0;
  const refunds = me.refunds || [];
  $("refunds-card").hidden = refunds.length === 0;
  const rl = $("refunds");
  rl.replaceChildren();
  for (const r of refunds) {
    const when = `${i18n.dateTime(r.created_at)} · ${t("history.refund")}${r.reason ? " · " + r.reason : ""}`;
    rl.append(historyItem(r.merchant_name || r.merchant_id, when, "+" + yuan(fen(r.amount) + fen(r.fee)), "in"));
  }
}

// ---- payment codes -----------------------------------------------------------------------

function showNoCode(text, retry) {
  $("code-digits").dataset.code = "";
  $("code-box").hidden = true;
  $("code-none").hidden = false;
  $("code-none-text").textContent = text;
  $("code-retry").hidden = !retry;
}

function renderCodes() {
  const me = state.me;
  if (!me || !state.codes) return;
  if (me.status === "frozen") {
    // A frozen card's codes are revoked on the server: none is shown, none is kept.
    state.codes.clear();
    showNoCode(t("codes.frozen"), false);
    return;
  }
  const code = state.codes.current();
  if (code) {
    // Drawn once per code (this runs on every tick and refresh).
    if ($("code-digits").dataset.code !== code) {
      drawQr($("qr"), code, "Numeric", 264);
      window.JsBarcode($("barcode"), code, {
        format: "CODE128",
        displayValue: false,
        width: 2,
        height: 64,
        margin: 8,
      });
      $("code-digits").textContent = code.replace(/(\d{4})(?=\d)/g, "$1 ");
      $("code-digits").dataset.code = code;
    }
    $("code-meta").textContent = t("pay.meta", {
      n: state.codes.left(),
      time: i18n.clock(state.codes.expiresAt()),
    });
    $("code-box").hidden = false;
    $("code-none").hidden = true;
    return;
  }
  if (state.fetching) showNoCode(t("codes.loading"), false);
  else if (!state.online) showNoCode(state.codes.expired() ? t("codes.expired") : t("codes.offline_none"), false);
  else if (state.codeError) showNoCode(t("codes.failed", { why: i18n.errorText(state.codeError) }), true);
  else showNoCode(t("codes.loading"), false);
}

async function fetchCodes() {
  if (state.fetching) return;
  state.fetching = true;
  renderCodes();
  try {
    state.codes.replace(await api("POST", "/v1/payment-codes"));
    state.codeError = null;
  } catch (e) {
    if (e.status === 401) return signedOut();
    if (e.offline) setOnline(false);
    if (e.code === "card_frozen" && state.me) state.me.status = "frozen";
    state.codeError = e;
    state.codeErrorAt = Date.now();
  } finally {
    state.fetching = false;
    renderCodes();
    renderCard();
  }
}

async function syncCodes() {
  const me = state.me;
  if (me.status !== "frozen" && state.online) {
    state.codes.saw(me.recent.filter((x) => x.mode === "reverse_scan").map((x) => x.transaction_id));
    const held = state.codes.left() > 0;
    if (state.codes.reconcile(me.payment_codes) === "superseded" && held) banner(t("codes.superseded"));
    if (state.codes.needsRefill()) await fetchCodes();
  }
  renderCodes();
}

// ---- loading and refreshing ----------------------------------------------------------

async function loadMe() {
  try {
    const me = await api("GET", "/v1/me");
    state.me = me;
    localStorage.setItem(ME_KEY, JSON.stringify(me));
    if (!state.online) setOnline(true);
    return me;
  } catch (e) {
    if (e.status === 401) {
      signedOut();
      return null;
    }
    if (e.offline) {
      setOnline(false);
      if (!state.me) {
        try {
          state.me = JSON.parse(localStorage.getItem(ME_KEY));
        } catch (_) {
          state.me = null;
        }
      }
      return state.me;
    }
    banner(i18n.errorText(e));
    return state.me;
  }
}

// One refresh at a time; a request during one runs once more after it (so a stale card view
// never judges a batch fetched meanwhile).
let running = null;
let again = false;
function refresh() {
  if (running) {
    again = true;
    return running;
  }
  running = (async () => {
    do {
      again = false;
      const me = await loadMe();
      if (!me) return;
      if (!state.codes) state.codes = new CodeStore(me.user_id);
      renderCard();
      confirmations.settled(me.recent);
      if (!state.started) begin();
      await syncCodes();
    } while (again);
  })().finally(() => {
    running = null;
  });
  return running;
}

// ---- results -------------------------------------------------------------------------------

function showResult(r, merchant) {
  state.lastResult = { r, merchant };
  const box = $("result");
  const status = ["approved", "declined", "reversed", "pending"].includes(r.status) ? r.status : "declined";
  box.className = "card result " + status;
  $("result-title").textContent = t("result." + status);
  $("result-reason").textContent = r.reason ? i18n.reason(r.reason) : "";
  $("result-reason").hidden = !r.reason;
  $("result-merchant").textContent = merchant || merchantName(r.merchant_id);
  // Named later by the card view if only the id is known now.
  box.dataset.merchantId = merchant ? "" : r.merchant_id;
  $("result-amount").textContent = r.amount ?? "—";
  $("result-fee").textContent = r.fee ?? "—";
  $("result-total").textContent = r.total ?? "—";
  const hasBalance = r.balance_after !== undefined && r.balance_after !== null;
  $("result-balance").textContent = hasBalance ? r.balance_after : "";
  $("result-balance").hidden = !hasBalance;
  $("result-balance-label").hidden = !hasBalance;
  box.dataset.requestId = r.request_id;
  box.dataset.status = status;
  box.hidden = false;
  box.scrollIntoView({ block: "nearest" });
}

function onResult(r) {
  if (!r || typeof r.request_id !== "string") return;
  const key = `${r.request_id}/${r.status}`;
  if (state.seen.includes(key)) return;
  state.seen.push(key);
  if (state.seen.length > RESULTS_SEEN_MAX) state.seen.shift();
  if (r.status === "pending") return;
  // The request this result ends (if the page showed one) names the merchant.
  const asked = confirmations.resolved(r.transaction_id);
  if (r.mode === "reverse_scan" && state.codes && state.codes.usedBy(r.transaction_id)) renderCodes();
  if (r.balance_after && state.me) {
    state.me.balance = r.balance_after;
    $("balance").textContent = r.balance_after;
  }
  const forOrder = order.onResult(r);
  showResult(r, (forOrder && forOrder.merchant_name) || (asked && asked.merchant_name));
  if (!forOrder && r.mode === "reverse_scan" && state.screen !== "pay") show("pay");
  refresh();
}

function connectEvents() {
  if (state.events) state.events.close();
  const es = new EventSource("/v1/events");
  es.onopen = () => {
    if (!state.online) setOnline(true);
    // Nothing is replayed on (re)connecting: read the card and the payments waiting for a
    // confirmation for what happened meanwhile.
    refresh();
    confirmations.load();
  };
  es.addEventListener("result", (e) => {
    try {
      onResult(JSON.parse(e.data));
    } catch (_) {
      /* not JSON: ignored, the durable copy is GET /v1/me */
    }
  });
  es.addEventListener("confirmation", (e) => {
    try {
      confirmations.add(JSON.parse(e.data));
    } catch (_) {
      /* ignored as above */
    }
  });
  es.onerror = () => {
    // CONNECTING: the browser retries by itself (offline, a restart). CLOSED: the server
    // refused the stream (e.g. the session ended); find out why, then try again.
    if (es.readyState === EventSource.CLOSED) {
      state.events = null;
      setTimeout(async () => {
        if (await loadMe()) connectEvents();
      }, 3000);
    }
  };
  state.events = es;
}

// ---- signing out -----------------------------------------------------------------------

function signedOut(message) {
  state.started = false;
  if (state.events) state.events.close();
  state.events = null;
  if (state.codes) state.codes.clear();
  localStorage.removeItem(ME_KEY);
  state.me = null;
  $("tabs").hidden = true;
  $("result").hidden = true;
  for (const id of ["name", "balance"]) $(id).textContent = "";
  $("identity").hidden = true;
  $("frozen-tag").hidden = true;
  $("signedout-text").textContent = message || t("signed_out.text");
  show("signedout");
}

async function signOut() {
  try {
    await api("POST", "/signout");
  } catch (_) {
    /* the cookie is HttpOnly: if the server is unreachable, the local copies still go */
  }
  signedOut(t("signed_out.done"));
}

// ---- start -------------------------------------------------------------------------------

async function start() {
  i18n.apply();
  $("lang").addEventListener("click", () => {
    i18n.setLang(i18n.lang() === "en" ? "zh-CN" : "en");
    if (state.me) {
      renderCard();
      renderCodes();
    }
    if (state.lastResult && !$("result").hidden) {
      showResult(state.lastResult.r, state.lastResult.merchant);
      const pending = $("result").dataset.merchantId;
      if (pending) $("result-merchant").textContent = merchantName(pending);
    }
    if (!state.online) banner(t("offline"));
    order.relabel();
    confirmations.relabel();
  });
  for (const b of document.querySelectorAll("#tabs button")) {
    b.addEventListener("click", () => {
      $("result").hidden = true;
      show(b.dataset.tab);
    });
  }
  $("result-done").addEventListener("click", () => {
    $("result").hidden = true;
  });
  $("code-retry").addEventListener("click", () => fetchCodes());
  $("signout").addEventListener("click", signOut);
  window.addEventListener("online", () => {
    setOnline(true);
    refresh();
  });
  window.addEventListener("offline", () => {
    setOnline(false);
    renderCodes();
  });
  setInterval(() => {
    if (state.me && state.codes) {
      renderCodes();
      const resting = Date.now() - state.codeErrorAt < CODE_RETRY_MS;
      if (state.online && state.me.status !== "frozen" && state.codes.needsRefill() && !state.fetching && !resting) {
        refresh();
      }
    }
  }, 5000);
  setInterval(() => {
    if (state.me && document.visibilityState === "visible") refresh();
  }, CARD_REFRESH_MS);
  if ("serviceWorker" in navigator && window.isSecureContext) {
    navigator.serviceWorker.register("/app/sw.js", { scope: "/app" }).catch(() => {});
  }
  if (!navigator.onLine) setOnline(false);
  await refresh();
  if (!state.me && state.screen !== "signedout") {
    if (state.online) signedOut();
    else {
      // Offline with nothing kept on this phone: say so; the "online" event tries again.
      $("signedout-text").textContent = t("error.network");
      show("signedout");
    }
  }
}

// The card is known: the tabs, the payment code, the event stream.
function begin() {
  state.started = true;
  $("tabs").hidden = false;
  show("pay");
  connectEvents();
  confirmations.load();
}

start();
