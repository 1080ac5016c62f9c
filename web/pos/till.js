// The till in the browser (/pos): the cashier types the amount, then scans the customer's
// payment code (a scanner typing into the page, or the camera), or shows a dynamic QR code
// for the customer to scan; the answer is pushed over server-sent events. It talks only to
// /pos/v1 (the bridge that publishes the same messages a hardware till does) and /signout.

import { api, uuid4 } from "/assets/api.js";
import * as i18n from "/assets/i18n.js";
import { t } from "/assets/i18n.js";
import { parseAmount, yuan } from "/assets/money.js";
import "./words.js";
import { Camera, KeyboardWedge, codeValid, CODE_LENGTH } from "./scanner.js";
import { Sale } from "./sale.js";
import { Sales } from "./sales.js";

const $ = (id) => document.getElementById(id);
const SCREENS = ["signedout", "charge", "qr", "sales"];
// Digits of an amount the keypad takes (100000.00 is the largest payment).
const MAX_AMOUNT_CHARS = 9;
// Keys of one burst remembered (the wedge keeps no longer bursts either).
const MAX_BURST_KEYS = 32;

const state = {
  me: null,
  screen: "charge",
  amount: "", // as typed: "12.5"
  scanning: false, // the amount is set, waiting for the code
  code: "", // digits typed by hand in the scanning step
  // The amount before each digit of the latest burst of keys (a scanner's code may follow a
  // quickly typed amount within one burst): what to go back to when the burst was a code.
  beforeKeys: [],
  events: null,
};

// ---- screens and the amount ---------------------------------------------------------------

function show(screen) {
  state.screen = screen;
  for (const s of SCREENS) $("screen-" + s).hidden = s !== screen;
  for (const b of document.querySelectorAll("#tabs button")) {
    if (b.dataset.tab === screen) b.setAttribute("aria-current", "page");
    else b.removeAttribute("aria-current");
  }
  if (screen === "sales") sales.load();
  if (screen !== "charge") stopScanning();
}

function renderAmount() {
  const fen = parseAmount(state.amount);
  $("amount").textContent = state.amount === "" ? "0.00" : state.amount;
  $("amount").dataset.value = fen === null ? "" : yuan(fen);
}

function typeAmount(key) {
  $("amount-error").textContent = "";
  let a = state.amount;
  if (key === "back") a = a.slice(0, -1);
  else if (key === ".") {
    if (!a.includes(".")) a = (a || "0") + ".";
  } else if (/^[0-9]$/.test(key)) {
    const decimals = a.includes(".") ? a.length - a.indexOf(".") - 1 : 0;
    if (decimals >= 2 || a.length >= MAX_AMOUNT_CHARS) return;
    a = a === "0" ? key : a + key;
  }
  state.amount = a;
  renderAmount();
}

function clearAmount() {
  state.amount = "";
  renderAmount();
}

// The amount as the API takes it, or null (with the reason shown).
function amountOrComplain() {
  const fen = parseAmount(state.amount);
  if (fen === null) {
    $("amount-error").textContent = t("till.bad_amount");
    return null;
  }
  return yuan(fen);
}

// ---- scanning ---------------------------------------------------------------------------

function startScanning() {
  const amount = amountOrComplain();
  if (!amount) return;
  state.scanning = true;
  state.code = "";
  $("scan-card").hidden = false;
  $("ready-card").hidden = true;
  $("screen-charge").classList.add("scanning");
  // On a narrow screen the scan card is below the amount: bring it (and its camera button) up.
  $("scan-card").scrollIntoView({ block: "center" });
  $("scan-amount").textContent = amount;
  $("scan-digits").textContent = "";
  $("scan-error").textContent = "";
  $("charge").disabled = true;
}

function stopScanning() {
  state.scanning = false;
  state.code = "";
  camera.stop();
  $("scan-card").hidden = true;
  $("ready-card").hidden = false;
  $("screen-charge").classList.remove("scanning");
  $("charge").disabled = false;
  $("camera").textContent = t("till.camera");
}

// A code from the scanner, the camera or typed by hand: checked here, then charged.
function codeIn(digits) {
  if (!codeValid(digits, state.me && state.me.code_prefix)) {
    $("scan-error").textContent = t("till.bad_code");
    state.code = "";
    $("scan-digits").textContent = "";
    return;
  }
  const amount = amountOrComplain();
  if (!amount) return;
  stopScanning();
  sale.start(digits, amount);
}

// Every key the page gets. While a sale's answer is shown, Enter starts the next one.
function onKey(key, startsBurst) {
  if (startsBurst) state.beforeKeys = [];
  if (/^[0-9]$/.test(key) && state.beforeKeys.length < MAX_BURST_KEYS) state.beforeKeys.push(state.amount);
  if (sale.busy) {
    if (key === "Enter" && sale.done) sale.close();
    return;
  }
  if (state.screen !== "charge") return;
  if (state.scanning) {
    if (/^[0-9]$/.test(key) && state.code.length < CODE_LENGTH) state.code += key;
    else if (key === "Backspace") state.code = state.code.slice(0, -1);
    else if (key === "Escape") return stopScanning();
    else if (key === "Enter" && state.code) return codeIn(state.code);
    $("scan-digits").textContent = state.code.replace(/(\d{4})(?=\d)/g, "$1 ");
    return;
  }
  if (/^[0-9.]$/.test(key)) typeAmount(key);
  else if (key === "Backspace") typeAmount("back");
  else if (key === "Escape") clearAmount();
  else if (key === "Enter") startScanning();
}

// A scanner's burst (digits + Enter, fast): its last 18 digits are the code (any before them
// were typed into the amount just before). The code's digits went to the amount or the code
// one by one before they could be told from typing: take them back off, then charge.
function onBurst(burst) {
  if (sale.busy || state.screen !== "charge") return;
  const digits = burst.slice(-CODE_LENGTH);
  if (state.scanning) {
    codeIn(digits);
    return;
  }
  const before = state.beforeKeys[burst.length - CODE_LENGTH];
  if (before !== undefined) state.amount = before;
  renderAmount();
  startScanning();
  if (state.scanning) codeIn(digits);
}

const camera = new Camera(
  $("video"),
  $("viewfinder"),
  (digits) => codeIn(digits),
  () => {
    $("scan-error").textContent = t("till.no_camera");
  },
);

// ---- the session, the events --------------------------------------------------------------

async function loadMe() {
  try {
    state.me = await api("GET", "/pos/v1/me");
  } catch (e) {
    if (e.status === 401 || e.status === 403) signedOut();
    return false;
  }
  $("merchant").textContent = state.me.merchant_name || state.me.merchant_id;
  $("terminal").textContent = state.me.terminal_id;
  $("terminal").hidden = false;
  $("tabs").hidden = false;
  $("signout").hidden = false;
  document.title = `${t("till.title")} · ${state.me.merchant_name || state.me.merchant_id} ${state.me.terminal_id}`;
  return true;
}

function connectEvents() {
  if (state.events) return;
  const es = new EventSource("/pos/v1/events");
  const handle = (kind) => (e) => {
    let msg;
    try {
      msg = JSON.parse(e.data);
    } catch (_) {
      return; // not JSON: ignored (the durable copy is query.v1 and the sales list)
    }
    sale.answer(kind, msg);
    if (kind === "result" && state.screen === "sales") sales.load();
  };
  es.addEventListener("result", handle("result"));
  es.addEventListener("query_status", handle("query_status"));
  es.addEventListener("dynamic_qr", handle("dynamic_qr"));
  es.onopen = () => {
    $("banner").hidden = true;
    document.body.dataset.events = "open";
  };
  es.onerror = () => {
    document.body.dataset.events = "";
    if (es.readyState === EventSource.CLOSED) {
      state.events = null;
      setTimeout(async () => {
        if (await loadMe()) connectEvents();
      }, 3000);
    }
  };
  state.events = es;
}

function signedOut() {
  if (state.events) state.events.close();
  state.events = null;
  state.me = null;
  $("tabs").hidden = true;
  $("signout").hidden = true;
  $("terminal").hidden = true;
  $("merchant").textContent = "";
  show("signedout");
}

// ---- wiring ---------------------------------------------------------------------------------

const sale = new Sale({ show, clearAmount, signedOut, onDone: () => sales.stale() });
const sales = new Sales({ sale });
new KeyboardWedge(onKey, onBurst);

for (const b of document.querySelectorAll("#keypad button")) {
  b.addEventListener("click", () => {
    if (!state.scanning) typeAmount(b.dataset.key);
  });
}
$("clear").addEventListener("click", () => clearAmount());
$("charge").addEventListener("click", () => startScanning());
$("scan-cancel").addEventListener("click", () => stopScanning());
$("camera").addEventListener("click", () => {
  if (camera.running) {
    camera.stop();
    $("camera").textContent = t("till.camera");
  } else {
    $("camera").textContent = t("till.camera_stop");
    camera.start();
  }
});
$("show-qr").addEventListener("click", () => {
  const amount = amountOrComplain();
  if (amount) sale.dynamicQr(amount);
});
$("qr-cancel").addEventListener("click", () => sale.cancelQr());
$("result-next").addEventListener("click", () => sale.close());
for (const b of document.querySelectorAll("#tabs button")) {
  b.addEventListener("click", () => show(b.dataset.tab));
}
$("lang").addEventListener("click", () => {
  i18n.setLang(i18n.lang() === "en" ? "zh-CN" : "en");
  sale.relabel();
  sales.render();
});
$("signout").addEventListener("click", async () => {
  try {
    await api("POST", "/signout");
  } catch (_) {
    /* signed out locally all the same */
  }
  signedOut();
});

i18n.apply();
renderAmount();
(async () => {
  if (await loadMe()) {
    show("charge");
    connectEvents();
  }
})();
