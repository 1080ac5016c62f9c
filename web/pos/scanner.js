// How a payment code reaches the till: a USB or Bluetooth scanner is a keyboard that types
// the 18 digits and Enter, so the page listens to every key on the document (no input to
// click first); the camera (jsQR on getUserMedia) is the fallback. Codes are checked
// offline before anything is sent: 18 digits, the campus prefix (or the earlier 28), and the
// Luhn check digit (src/domain/payment_code.rs).

// A scanner types a whole code within a few hundred milliseconds; a person is much slower.
// Keys closer together than this belong to one burst.
const BURST_GAP_MS = 60;
// The longest burst kept (a scanner never types more than a code and Enter).
const MAX_BURST = 32;
export const CODE_LENGTH = 18;
const LEGACY_PREFIX = "28";

// The Luhn check over the whole code (its last digit is the check digit).
export function luhnValid(digits) {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return digits.length > 1 && sum % 10 === 0;
}

// Whether `digits` may be a campus payment code (`prefix`: the campus's, "88" by default).
export function codeValid(digits, prefix) {
  return (
    /^\d+$/.test(digits) &&
    digits.length === CODE_LENGTH &&
    (digits.startsWith(prefix || "88") || digits.startsWith(LEGACY_PREFIX)) &&
    luhnValid(digits)
  );
}

// Listens to the document's keys. `onKey(key, startsBurst)` gets every key a person may have
// typed (a digit, ".", "Backspace", "Enter", "Escape"; `startsBurst` for a digit that follows
// a pause); `onBurst(digits)` gets what a scanner typed: digits that came in one fast burst
// ended by Enter. The keys of a burst went to `onKey` too, one by one (nobody can tell a
// scanner before its second key): callers undo them from what they had at its start.
export class KeyboardWedge {
  constructor(onKey, onBurst) {
    this.onKey = onKey;
    this.onBurst = onBurst;
    this.burst = "";
    this.last = 0;
    document.addEventListener("keydown", (e) => this.key(e));
  }

  key(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const tag = e.target && e.target.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA") return;
    const now = performance.now();
    const k = e.key;
    if (/^[0-9]$/.test(k)) {
      const starts = now - this.last > BURST_GAP_MS || this.burst === "";
      if (starts) this.burst = "";
      if (this.burst.length < MAX_BURST) this.burst += k;
      this.last = now;
      e.preventDefault();
      this.onKey(k, starts);
      return;
    }
    if (k === "Enter") {
      e.preventDefault();
      const fast = this.burst.length >= CODE_LENGTH && now - this.last <= BURST_GAP_MS * 4;
      const burst = this.burst;
      this.burst = "";
      if (fast) this.onBurst(burst);
      else this.onKey("Enter");
      return;
    }
    this.burst = "";
    if (k === "." || k === "Backspace" || k === "Escape") {
      e.preventDefault();
      this.onKey(k, false);
    }
  }
}

// Frames every 150 ms, scaled down to this longest side before decoding.
const SCAN_EVERY_MS = 150;
const MAX_SIDE = 960;

// The camera fallback: reads QR codes (a payment code's QR carries its digits) until stopped.
export class Camera {
  constructor(video, box, onCode, onProblem) {
    this.video = video;
    this.box = box;
    this.onCode = onCode;
    this.onProblem = onProblem;
    this.stream = null;
    this.timer = null;
    this.canvas = document.createElement("canvas");
  }

  get running() {
    return !!this.stream;
  }

  async start() {
    if (this.stream) return;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      this.onProblem();
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
    } catch (_) {
      this.onProblem();
      return;
    }
    this.stream = stream;
    this.video.srcObject = stream;
    this.box.hidden = false;
    await this.video.play().catch(() => {});
    this.timer = setInterval(() => this.tick(), SCAN_EVERY_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    if (this.stream) this.stream.getTracks().forEach((tr) => tr.stop());
    this.stream = null;
    this.video.srcObject = null;
    this.box.hidden = true;
  }

  tick() {
    const v = this.video;
    if (!this.stream || v.readyState < 2 || !window.jsQR) return;
    const k = Math.min(1, MAX_SIDE / Math.max(v.videoWidth, v.videoHeight));
    const w = Math.round(v.videoWidth * k);
    const h = Math.round(v.videoHeight * k);
    if (!w || !h) return;
    this.canvas.width = w;
    this.canvas.height = h;
    const g = this.canvas.getContext("2d", { willReadFrequently: true });
    g.drawImage(v, 0, 0, w, h);
    const hit = window.jsQR(g.getImageData(0, 0, w, h).data, w, h, { inversionAttempts: "attemptBoth" });
    if (hit && /^\d+$/.test(hit.data)) {
      this.stop();
      this.onCode(hit.data);
    }
  }
}
