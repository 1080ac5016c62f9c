// A QR code drawn on a canvas with qrcode-generator (web/vendor): the wallet's payment code
// and the till's dynamic code. Drawn cell by cell, with the four-module quiet zone scanners
// need, each module a whole number of pixels (at least 4) so the code stays sharp.

// Draws `data` (`mode`: "Numeric" or "Byte") at about `px` pixels square on `canvas`.
export function drawQr(canvas, data, mode, px) {
  const qr = window.qrcode(0, "M");
  qr.addData(data, mode);
  qr.make();
  const n = qr.getModuleCount();
  const quiet = 4;
  const cell = Math.max(4, Math.floor(px / (n + 2 * quiet)));
  const size = cell * (n + 2 * quiet);
  canvas.width = size;
  canvas.height = size;
  const g = canvas.getContext("2d");
  g.fillStyle = "#fff";
  g.fillRect(0, 0, size, size);
  g.fillStyle = "#000";
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) {
      if (qr.isDark(r, c)) g.fillRect((c + quiet) * cell, (r + quiet) * cell, cell, cell);
    }
  }
}
