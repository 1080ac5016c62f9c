// Queues and dead letters: depths and consumers, the dead letters in pay.dead; inspect one
// (payment codes masked by the server), replay (confirmed first) or drop (with a reason).

import { api } from "/assets/api.js";
import { t } from "/assets/i18n.js";
import { el, clear, card, table, act, confirmAction, showInfo } from "./ui.js";

let root = null;

export function show(section) {
  root = section;
  load();
}

async function load() {
  const [overview, dead] = await Promise.all([
    act(null, () => api("GET", "/admin/v1/queues")),
    act(null, () => api("GET", "/admin/v1/dead?limit=100")),
  ]);
  const detail = el("pre", { class: "out", id: "dead-detail", hidden: true });
  const parts = [];
  if (overview) {
    parts.push(
      card(
        el("h2", { i18n: "dash.queues" }),
        table(
          ["q.name", "q.role", { key: "q.ready", num: true }, { key: "q.unacked", num: true }, { key: "q.consumers", num: true }],
          overview.pipeline.map((q) => [q.name, q.role, String(q.ready ?? "—"), String(q.unacked ?? "—"), String(q.consumers ?? "—")]),
        ),
      ),
    );
  }
  if (dead) {
    const rows = dead.letters.map((l) => {
      const inspect = el("button", { type: "button", class: "link", i18n: "dead.inspect" });
      inspect.addEventListener("click", () =>
        act(inspect, async () => {
          const d = await api("GET", `/admin/v1/dead/letters/${encodeURIComponent(l.id)}`);
          detail.textContent = JSON.stringify(d.copies, null, 2);
          detail.hidden = false;
        }),
      );
      const replay = el("button", { type: "button", class: "replay", "data-id": l.id, i18n: "dead.replay" });
      replay.addEventListener("click", () =>
        act(replay, async () => {
          if (!(await confirmAction(t("dead.confirm_replay", { id: l.id, stage: l.stage })))) return;
          const r = await api("POST", "/admin/v1/dead/replay", { ids: [l.id] });
          showInfo(t("dead.replayed", { n: r.replayed.length, failed: r.failed.length }));
          await load();
        }),
      );
      const drop = el("button", { type: "button", i18n: "dead.drop" });
      drop.addEventListener("click", () =>
        act(drop, async () => {
          const why = prompt(t("dead.drop_reason"));
          if (!why) return;
          const r = await api("POST", "/admin/v1/dead/drop", { ids: [l.id], reason: why });
          showInfo(t("dead.dropped", { n: r.dropped.length, file: r.record_file }));
          await load();
        }),
      );
      return [l.id, l.stage, l.reason, String(l.age_secs ?? "—"), String(l.replayed), el("span", {}, inspect, " ", replay, " ", drop)];
    });
    parts.push(
      card(
        el("h2", { text: t("dead.title", { n: dead.letters.length }) }),
        rows.length
          ? table(["dead.id", "dead.stage", "dead.reason", { key: "dead.age", num: true }, { key: "dead.replays", num: true }, ""], rows)
          : el("p", { class: "muted", i18n: "dead.none" }),
        detail,
      ),
    );
  }
  clear(root, parts);
}
