// The operator console: tabs, language, sign-out. Each screen is a module with
// `show(section)` (render and start its polling) and optionally `hide()`; they call /admin/v1
// with the session cookie (web/common/api.js adds the CSRF header to changes).

import { api } from "/assets/api.js";
import { apply, lang, setLang } from "/assets/i18n.js";
import "./words.js";
import { showError } from "./ui.js";
import * as dashboard from "./dashboard.js";
import * as queues from "./queues.js";
import * as merchants from "./merchants.js";
import * as cards from "./cards.js";
import * as money from "./money.js";
import * as reports from "./reports.js";

const SCREENS = { dashboard, queues, merchants, cards, money, reports };
let current = null;

function open(name) {
  if (!SCREENS[name]) name = "dashboard";
  if (current && SCREENS[current].hide) SCREENS[current].hide();
  current = name;
  for (const b of document.querySelectorAll("#tabs button")) {
    if (b.dataset.tab === name) b.setAttribute("aria-current", "page");
    else b.removeAttribute("aria-current");
  }
  for (const k of Object.keys(SCREENS)) {
    document.getElementById("screen-" + k).hidden = k !== name;
  }
  document.getElementById("banner").hidden = true;
  if (location.hash !== "#" + name) history.replaceState(null, "", "#" + name);
  SCREENS[name].show(document.getElementById("screen-" + name));
}

for (const b of document.querySelectorAll("#tabs button")) {
  b.addEventListener("click", () => open(b.dataset.tab));
}

document.getElementById("lang").addEventListener("click", () => {
  setLang(lang() === "en" ? "zh-CN" : "en");
  open(current);
});

document.getElementById("signout").addEventListener("click", async () => {
  try {
    await api("POST", "/signout");
  } catch (e) {
    showError(e);
    return;
  }
  location.reload();
});

apply();
open(location.hash.slice(1));
