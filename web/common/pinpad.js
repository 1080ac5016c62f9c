// A six-digit payment-PIN pad (the PIN never leaves the page except in the one request that
// pays or confirms). Buttons carry data-key="0".."9" or "back"; after the sixth digit the pad
// calls onDone(pin) and waits until reset() or disable(false).

import { t } from "./i18n.js";

export const PIN_LENGTH = 6;

export class PinPad {
  constructor(host, onDone) {
    this.onDone = onDone;
    this.pin = "";
    this.busy = false;
    host.replaceChildren();
    this.dots = document.createElement("div");
    this.dots.className = "pin-dots";
    this.dots.setAttribute("aria-live", "polite");
    for (let i = 0; i < PIN_LENGTH; i++) this.dots.append(document.createElement("span"));
    const keys = document.createElement("div");
    keys.className = "pin-keys";
    for (const k of ["1", "2", "3", "4", "5", "6", "7", "8", "9", "", "0", "back"]) {
      const b = document.createElement("button");
      b.type = "button";
      if (k === "") {
        b.disabled = true;
        b.className = "blank";
      } else {
        b.dataset.key = k;
        b.textContent = k === "back" ? "⌫" : k;
        if (k === "back") b.setAttribute("aria-label", t("pin.clear"));
      }
      keys.append(b);
    }
    keys.addEventListener("click", (e) => {
      const key = e.target.closest("button")?.dataset.key;
      if (key) this.press(key);
    });
    host.append(this.dots, keys);
    this.render();
  }

  press(key) {
    if (this.busy) return;
    if (key === "back") this.pin = this.pin.slice(0, -1);
    else if (/^\d$/.test(key) && this.pin.length < PIN_LENGTH) this.pin += key;
    this.render();
    if (this.pin.length === PIN_LENGTH) {
      this.busy = true;
      this.onDone(this.pin);
    }
  }

  reset() {
    this.pin = "";
    this.busy = false;
    this.render();
  }

  render() {
    [...this.dots.children].forEach((d, i) => d.classList.toggle("on", i < this.pin.length));
  }
}
