// The payment codes on this phone: the TSM's batch of ten one-time codes (POST
// /v1/payment-codes), kept in localStorage so the wallet still shows a valid code offline.
//
// A code is used when the result of a reverse-scan payment arrives (the one shown was the one
// scanned) or when GET /v1/me says fewer of the batch are left; a newer batch on the server
// (fetched here or on another device) supersedes every unused code of the older one, so a
// batch the server no longer calls newest is thrown away at once.

const PREFIX = "campuspay.codes.";
// Fetch a new batch when this few codes are left, or when the batch expires within a minute.
const REFILL_AT = 3;
const EXPIRY_MARGIN_MS = 60 * 1000;
// Transaction ids remembered, so that a result seen twice (SSE, then GET /v1/me) uses one code.
const SEEN_MAX = 50;

function valid(s) {
  return (
    s &&
    typeof s.batch_id === "string" &&
    typeof s.expires_at === "string" &&
    Array.isArray(s.codes) &&
    s.codes.every((c) => /^\d{18}$/.test(c)) &&
    Array.isArray(s.seen)
  );
}

export class CodeStore {
  constructor(user) {
    this.key = PREFIX + user;
    // Another cardholder's codes have no business on this phone any more.
    for (let i = localStorage.length - 1; i >= 0; i--) {
      const k = localStorage.key(i);
      if (k && k.startsWith(PREFIX) && k !== this.key) localStorage.removeItem(k);
    }
    try {
      const s = JSON.parse(localStorage.getItem(this.key));
      this.s = valid(s) ? s : null;
    } catch (_) {
      this.s = null;
    }
  }

  save() {
    if (this.s) localStorage.setItem(this.key, JSON.stringify(this.s));
    else localStorage.removeItem(this.key);
  }

  clear() {
    this.s = null;
    this.save();
  }

  // A new batch from the TSM: the old one is superseded on the server already.
  replace(issued) {
    this.s = {
      batch_id: issued.batch_id,
      expires_at: issued.expires_at,
      codes: issued.codes.slice(),
      seen: this.s ? this.s.seen : [],
    };
    this.save();
  }

  expired(now = Date.now()) {
    return !!this.s && Date.parse(this.s.expires_at) <= now;
  }

  // The code to show, or null (none left, or the batch expired).
  current(now = Date.now()) {
    if (!this.s || this.expired(now) || this.s.codes.length === 0) return null;
    return this.s.codes[0];
  }

  left() {
    return this.s ? this.s.codes.length : 0;
  }

  expiresAt() {
    return this.s ? this.s.expires_at : null;
  }

  needsRefill(now = Date.now()) {
    return (
      !this.s ||
      this.s.codes.length <= REFILL_AT ||
      Date.parse(this.s.expires_at) - now < EXPIRY_MARGIN_MS
    );
  }

  // The result of reverse-scan payment `txId` arrived: the code shown was used. Whether the
  // code shown changed.
  usedBy(txId) {
    if (!this.s || this.s.seen.includes(txId)) return false;
    this.s.seen.push(txId);
    if (this.s.seen.length > SEEN_MAX) this.s.seen.splice(0, this.s.seen.length - SEEN_MAX);
    this.s.codes.shift();
    this.save();
    return true;
  }

  // Reverse-scan transactions the server lists (GET /v1/me recent): remembered as seen, so their
  // results arriving late do not use a second code.
  saw(txIds) {
    if (!this.s) return;
    for (const id of txIds) if (!this.s.seen.includes(id)) this.s.seen.push(id);
    if (this.s.seen.length > SEEN_MAX) this.s.seen.splice(0, this.s.seen.length - SEEN_MAX);
    this.save();
  }

  // What the server says of the card's newest batch (GET /v1/me `payment_codes`):
  // "superseded" (ours is not the newest: thrown away), "trimmed" (codes used meanwhile were
  // dropped, oldest first: the phone shows them in order), "ok", or "none" (we hold none).
  reconcile(newest) {
    if (!this.s) return "none";
    if (!newest || newest.batch_id !== this.s.batch_id) {
      this.clear();
      return "superseded";
    }
    let trimmed = false;
    while (this.s.codes.length > Math.max(0, newest.unused)) {
      this.s.codes.shift();
      trimmed = true;
    }
    this.save();
    return trimmed ? "trimmed" : "ok";
  }
}
