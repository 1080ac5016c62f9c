// Money in integer fen (分), never floats: amounts are typed and shown as decimal strings in
// yuan with two decimals, as the API sends them.

const MAX_FEN = 10000000; // 100000.00 yuan, the largest amount a payment may have

// "12.5" → 1250; null when it is not an amount a payment may have (0.01 to 100000.00, at most
// two decimals).
export function parseAmount(text) {
  const s = String(text).trim();
  const m = /^(\d{1,6})(?:\.(\d{1,2}))?$/.exec(s);
  if (!m) return null;
  const fen = Number(m[1]) * 100 + Number((m[2] || "0").padEnd(2, "0"));
  return fen > 0 && fen <= MAX_FEN ? fen : null;
}

// A money string from the API ("12.50", "-3.00") → fen.
export function fen(text) {
  if (text === null || text === undefined) return null;
  const m = /^(-?)(\d+)\.(\d{2})$/.exec(String(text));
  if (!m) return null;
  const v = Number(m[2]) * 100 + Number(m[3]);
  return m[1] ? -v : v;
}

export function yuan(f) {
  if (f === null || f === undefined) return "—";
  const neg = f < 0;
  const a = Math.abs(f);
  return `${neg ? "-" : ""}${Math.floor(a / 100)}.${String(a % 100).padStart(2, "0")}`;
}

// The surcharge on `amountFen` at `rate` ("0", "0.1", "0.1234", "1": at most four decimals),
// rounded half-up to the fen, as the server computes it (domain::fee::FeeRate::fee_for).
export function feeFor(amountFen, rate) {
  const m = /^(\d)(?:\.(\d{1,4}))?$/.exec(String(rate));
  if (!m) return null;
  const e4 = Number(m[1]) * 10000 + Number((m[2] || "0").padEnd(4, "0"));
  return Math.floor((amountFen * e4 + 5000) / 10000);
}

// "0.15" → "15%", "0.125" → "12.5%".
export function percent(rate) {
  const m = /^(\d)(?:\.(\d{1,4}))?$/.exec(String(rate));
  if (!m) return String(rate);
  const e4 = Number(m[1]) * 10000 + Number((m[2] || "0").padEnd(4, "0"));
  const whole = Math.floor(e4 / 100);
  const frac = e4 % 100;
  return frac === 0 ? `${whole}%` : `${whole}.${String(frac).padStart(2, "0").replace(/0$/, "")}%`;
}
