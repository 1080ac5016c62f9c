// Forward scan (正扫): read the merchant's QR code with the camera (getUserMedia; the
// browser's BarcodeDetector where it has one, else the vendored jsQR) or from a photo, then
// hand the payload to the order flow. Cameras need a secure context (https, localhost); a
// photo works everywhere.

import { t } from "/assets/i18n.js";

const $ = (id) => document.getElementById(id);
// A frame every 150 ms is quick to the eye and leaves the phone's CPU mostly idle.
const SCAN_EVERY_MS = 150;
// Frames and photos are scaled down to this longest side before decoding.
const MAX_SIDE = 960;

async function makeDetector() {
  if (!("BarcodeDetector" in window)) return null;
  try {
    const formats = await window.BarcodeDetector.getSupportedFormats();
    return formats.includes("qr_code") ? new window.BarcodeDetector({ formats: ["qr_code"] }) : null;
  } catch (_) {
    return null;
  }
}

export class Scanner {
  constructor(ctx) {
    this.ctx = ctx;
    this.stream = null;
    this.timer = null;
    this.busy = false;
    this.detector = undefined;
    this.canvas = document.createElement("canvas");
    this.video = $("video");
    $("photo").addEventListener("change", (e) => {
      const file = e.target.files && e.target.files[0];
      e.target.value = "";
      if (file) this.photo(file);
    });
    $("scan-again").addEventListener("click", () => this.start());
  }

  status(text) {
    $("scan-status").textContent = text;
  }

  async start() {
    if (this.stream || this.starting) return;
    $("scan-again").hidden = true;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      this.status(t("scan.no_camera"));
      return;
    }
    this.status(t("scan.starting"));
    this.starting = true;
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        video: { facingMode: "environment" },
        audio: false,
      });
    } catch (e) {
      this.status(e && e.name === "NotAllowedError" ? t("scan.denied") : t("scan.no_camera"));
      return;
    } finally {
      this.starting = false;
    }
    if (this.ctx.state.screen !== "scan") {
      // The cardholder left the scan screen while the camera was opening.
      stream.getTracks().forEach((tr) => tr.stop());
      return;
    }
    this.stream = stream;
    this.video.srcObject = stream;
    $("viewfinder").hidden = false;
    await this.video.play().catch(() => {});
    if (this.detector === undefined) this.detector = await makeDetector();
    this.status(t("scan.aim"));
    this.timer = setInterval(() => this.tick(), SCAN_EVERY_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    if (this.stream) this.stream.getTracks().forEach((tr) => tr.stop());
    this.stream = null;
    this.video.srcObject = null;
    $("viewfinder").hidden = true;
  }

  async tick() {
    if (this.busy || !this.stream || this.video.readyState < 2) return;
    this.busy = true;
    try {
      const text = await this.decode(this.video, this.video.videoWidth, this.video.videoHeight);
      if (text) {
        this.stop();
        await this.found(text);
      }
    } finally {
      this.busy = false;
    }
  }

  async decode(source, w, h) {
    if (this.detector) {
      try {
        const codes = await this.detector.detect(source);
        if (codes.length) return codes[0].rawValue;
      } catch (_) {
        /* fall back to jsQR */
      }
    }
    if (!window.jsQR || !w || !h) return null;
    const k = Math.min(1, MAX_SIDE / Math.max(w, h));
    const cw = Math.round(w * k);
    const ch = Math.round(h * k);
    this.canvas.width = cw;
    this.canvas.height = ch;
    const g = this.canvas.getContext("2d", { willReadFrequently: true });
    g.drawImage(source, 0, 0, cw, ch);
    const img = g.getImageData(0, 0, cw, ch);
    const hit = window.jsQR(img.data, cw, ch, { inversionAttempts: "attemptBoth" });
    return hit ? hit.data : null;
  }

  async photo(file) {
    this.stop();
    this.status(t("scan.reading"));
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch (_) {
      this.status(t("scan.not_found"));
      $("scan-again").hidden = false;
      return;
    }
    if (this.detector === undefined) this.detector = await makeDetector();
    const text = await this.decode(bitmap, bitmap.width, bitmap.height);
    bitmap.close();
    if (!text) {
      this.status(t("scan.not_found"));
      $("scan-again").hidden = false;
      return;
    }
    await this.found(text);
  }

  async found(text) {
    this.status(t("scan.reading"));
    const opened = await this.ctx.order.create(text);
    if (!opened) $("scan-again").hidden = false;
  }
}
