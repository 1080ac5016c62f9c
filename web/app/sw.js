// The wallet's service worker: keeps the page and its files so that /app opens without a
// network (in the canteen's basement) and shows a payment code kept on the phone. Network
// first, so an online phone always runs the current version; the copy is only for offline.
// Never touches /v1 (money and cards are always asked of the server) or the sign-in pages.
// Browsers run it in secure contexts only (https, localhost).

const CACHE = "campuspay-wallet-v1";
const SHELL = [
  "/app",
  "/app/wallet.js",
  "/app/codes.js",
  "/app/scan.js",
  "/app/order.js",
  "/app/confirm.js",
  "/assets/api.js",
  "/assets/i18n.js",
  "/assets/money.js",
  "/assets/pinpad.js",
  "/assets/qr.js",
  "/assets/style.css",
  "/assets/vendor/qrcode-generator-1.4.4/qrcode.js",
  "/assets/vendor/jsbarcode-3.11.6/JsBarcode.code128.min.js",
  "/assets/vendor/jsqr-1.4.0/jsQR.js",
];

self.addEventListener("install", (e) => {
  e.waitUntil(
    caches
      .open(CACHE)
      .then((c) => c.addAll(SHELL))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (e) => {
  e.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== "GET" || url.origin !== self.location.origin || !SHELL.includes(url.pathname)) {
    return;
  }
  e.respondWith(
    fetch(e.request)
      .then((resp) => {
        if (resp.ok) {
          const copy = resp.clone();
          caches.open(CACHE).then((c) => c.put(url.pathname, copy));
        }
        return resp;
      })
      .catch(() => caches.match(url.pathname).then((hit) => hit || Response.error())),
  );
});
