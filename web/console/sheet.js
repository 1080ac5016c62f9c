// The print button of the A4 QR sheet (no inline script: the page's CSP forbids it).
document.getElementById("print").addEventListener("click", () => window.print());
