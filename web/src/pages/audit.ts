// The audit log (admin): every mutating call and every login.
import { api, type Page as PageOf } from "../api";
import { badge, card, field, form, h, mount, pager, table } from "../dom";
import { time } from "../format";
import type { Page } from "../page";

interface AuditEntry {
  id: number;
  ts: string;
  actor: string;
  action: string;
  target: string | null;
  result: string;
  status: number | null;
  client_ip: string | null;
  detail: string | null;
}

export const auditPage: Page = async (root) => {
  const actor = h("input", { placeholder: "any", name: "actor" });
  const action = h("input", { placeholder: "any (e.g. auth.login)", name: "action" });
  const list = h("div");
  const pages = h("div", { class: "row" });
  let page = 1;
  const load = async () => {
    const q = new URLSearchParams({ page: String(page), page_size: "50" });
    if (actor.value) q.set("actor", actor.value);
    if (action.value) q.set("action", action.value);
    const res = await api<PageOf<AuditEntry>>(`/api/v1/audit?${q}`);
    mount(
      list,
      table(
        [
          { title: "Time", value: (a: AuditEntry) => time(a.ts) },
          { title: "Actor", value: (a: AuditEntry) => a.actor },
          { title: "Action", value: (a: AuditEntry) => h("code", null, a.action) },
          { title: "Target", value: (a: AuditEntry) => a.target ?? "" },
          { title: "Result", value: (a: AuditEntry) => badge(a.result, a.result === "ok" ? "succeeded" : "failed") },
          { title: "Status", value: (a: AuditEntry) => a.status ?? "", num: true },
          { title: "Client", value: (a: AuditEntry) => a.client_ip ?? "" },
          { title: "Detail", value: (a: AuditEntry) => a.detail ?? "" },
        ],
        res.items,
        { testid: "audit", empty: "Nothing recorded." },
      ),
    );
    pager(pages, page, res.total, res.page_size, "records", (p) => ((page = p), void load()));
  };
  const filter = form({ class: "row wrap filters" }, () => ((page = 1), load()), field("Actor", actor), field("Action", action), h("button", { type: "submit", class: "ghost" }, "Filter"));
  mount(root, h("h1", null, "Audit log"), filter, card(null, list, pages));
  await load();
};
