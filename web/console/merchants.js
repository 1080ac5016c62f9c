// Merchants and terminals: add, list, a till's credentials (shown once), a till sign-in link,
// the static QR codes as PNG and SVG downloads and the printable A4 sheet.

import { api } from "/assets/api.js";
import { t } from "/assets/i18n.js";
import { el, clear, card, table, act, confirmAction, showInfo } from "./ui.js";

let root = null;

export function show(section) {
  root = section;
  load();
}

function qrLinks(m, terminal) {
  const q = terminal ? `?terminal=${encodeURIComponent(terminal)}` : "";
  const base = `/admin/v1/merchants/${encodeURIComponent(m)}`;
  const name = terminal ? `campuspay-${m}-${terminal}` : `campuspay-${m}`;
  return {
    png: `${base}/qr.png${q}`,
    svg: `${base}/qr.svg${q}`,
    node: el(
      "span",
      {},
      el("a", { href: `${base}/qr.png${q}`, download: `${name}.png`, class: "qr-png" }, "PNG"),
      " · ",
      el("a", { href: `${base}/qr.svg${q}`, download: `${name}.svg`, class: "qr-svg" }, "SVG"),
    ),
  };
}

function showCredentials(out, c) {
  clear(
    out,
    el("h2", { i18n: "m.credentials" }),
    el("p", { class: "muted small", i18n: "m.credentials_once" }),
    el("pre", { class: "out", id: "credentials" }, JSON.stringify(c, null, 2)),
  );
  out.hidden = false;
}

async function load() {
  const data = await act(null, () => api("GET", "/admin/v1/merchants"));
  if (!data) return;
  const out = el("div", { class: "card", id: "merchant-out", hidden: true });
  const preview = el("div", { class: "card qr-pair", id: "qr-preview", hidden: true });

  const addMerchant = el(
    "form",
    { class: "inline", id: "add-merchant" },
    el("label", {}, t("m.id"), el("input", { name: "id", required: true, maxlength: 32 })),
    el("label", {}, t("m.name"), el("input", { name: "name", required: true, maxlength: 100 })),
    el("button", { type: "submit", class: "primary", i18n: "m.add" }),
  );
  addMerchant.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = new FormData(addMerchant);
    act(addMerchant.querySelector("button"), async () => {
      await api("POST", "/admin/v1/merchants", { id: f.get("id").trim(), name: f.get("name").trim() });
      showInfo(t("m.added", { id: f.get("id") }));
      await load();
    });
  });
  const addTerminal = el(
    "form",
    { class: "inline", id: "add-terminal" },
    el(
      "label",
      {},
      t("m.merchant"),
      el("select", { name: "merchant_id" }, data.merchants.map((m) => el("option", { value: m.merchant_id }, `${m.merchant_id} ${m.name}`))),
    ),
    el("label", {}, t("m.terminal"), el("input", { name: "terminal_id", required: true, maxlength: 32 })),
    el("button", { type: "submit", class: "primary", i18n: "m.add_terminal" }),
  );
  addTerminal.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = new FormData(addTerminal);
    act(addTerminal.querySelector("button"), async () => {
      const c = await api("POST", "/admin/v1/terminals", {
        merchant_id: f.get("merchant_id"),
        terminal_id: f.get("terminal_id").trim(),
      });
      await load();
      showCredentials(document.getElementById("merchant-out"), c);
    });
  });

  const rows = [];
  for (const m of data.merchants) {
    const own = qrLinks(m.merchant_id, null);
    const look = (links, label) => {
      const b = el("button", { type: "button", class: "link", i18n: "m.show_qr" });
      b.addEventListener("click", () => {
        clear(
          preview,
          el("img", { src: links.png, alt: label, id: "qr-img" }),
          el("div", {}, el("p", { text: label }), links.node.cloneNode(true)),
        );
        preview.hidden = false;
      });
      return b;
    };
    rows.push([
      el("strong", { text: m.merchant_id }),
      m.name,
      t("m.merchant_code"),
      el("span", {}, look(own, m.name), " ", own.node, " · ", el("a", { href: `/console/merchants/${encodeURIComponent(m.merchant_id)}/sheet`, target: "_blank", class: "sheet-link" }, t("m.sheet"))),
    ]);
    for (const term of m.terminals) {
      const links = qrLinks(m.merchant_id, term.terminal_id);
      const rotate = el("button", { type: "button", i18n: "m.rotate" });
      rotate.addEventListener("click", () =>
        act(rotate, async () => {
          if (!(await confirmAction(t("m.confirm_rotate", { t: `${m.merchant_id}/${term.terminal_id}` })))) return;
          const c = await api("POST", `/admin/v1/terminals/${encodeURIComponent(m.merchant_id)}/${encodeURIComponent(term.terminal_id)}/rotate`);
          showCredentials(out, c);
        }),
      );
      const link = el("button", { type: "button", class: "till-link", i18n: "m.till_link" });
      link.addEventListener("click", () =>
        act(link, async () => {
          let made;
          try {
            made = await api("POST", `/admin/v1/terminals/${encodeURIComponent(m.merchant_id)}/${encodeURIComponent(term.terminal_id)}/sign-in-links`, {});
          } catch (e) {
            // The till's sign-in links come with the till page (/pos); a server without it
            // answers 404 for the route itself.
            if (e.status === 404 && e.code === "not_found" && /route/.test(e.message)) {
              throw Object.assign(new Error(t("m.till_link_missing")), { code: "till_link_missing" });
            }
            throw e;
          }
          clear(out, el("h2", { i18n: "m.till_link" }), el("pre", { class: "out", id: "till-link" }, made.url), el("p", { class: "muted small", text: made.expires_at }));
          out.hidden = false;
        }),
      );
      rows.push(["", "", `${t("m.terminal")} ${term.terminal_id}`, el("span", {}, look(links, `${m.name} · ${term.terminal_id}`), " ", links.node, " ", rotate, " ", link)]);
    }
  }
  clear(
    root,
    card(el("h2", { i18n: "m.add" }), addMerchant, addTerminal),
    out,
    preview,
    card(el("h2", { i18n: "m.list" }), table(["m.id", "m.name", "m.code", ""], rows)),
  );
}
