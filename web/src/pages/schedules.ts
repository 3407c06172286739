// Schedules: cron (with seconds, UTC) → a job; enable, disable, edit, delete.
import { api, isAdmin, type Page as PageOf } from "../api";
import { badge, card, confirmDialog, field, form, h, inlineEdit, mount, showError as err, table, toast } from "../dom";
import { time } from "../format";
import type { Page } from "../page";

interface Schedule {
  id: string;
  name: string;
  cron: string;
  job: { kind: string; queue?: string | null; params: unknown };
  enabled: boolean;
  last_run_at: string | null;
  last_job_id: string | null;
  /** Why the scheduler turned it off (a cron that no longer parses). */
  disabled_reason: string | null;
  next_run_at: string | null;
}


export const schedulesPage: Page = async (root) => {
  const list = h("div");
  const kinds = await api<{ kind: string; queue: string; description: string }[]>("/api/v1/jobs/kinds");

  const patch = async (s: Schedule, body: Record<string, unknown>) => {
    try {
      await api(`/api/v1/schedules/${s.id}`, { method: "PATCH", body });
      await load();
    } catch (e) {
      err(e);
    }
  };

  const load = async () => {
    const page = await api<PageOf<Schedule>>("/api/v1/schedules?page_size=100");
    mount(
      list,
      table(
        [
          { title: "Name", value: (s: Schedule) => s.name, sort: (s) => s.name },
          { title: "Cron (UTC)", value: (s: Schedule) => h("code", null, s.cron) },
          { title: "Job", value: (s: Schedule) => [h("code", null, s.job.kind), h("div", { class: "muted small" }, JSON.stringify(s.job.params))] },
          {
            title: "State",
            value: (s: Schedule) =>
              s.disabled_reason
                ? [badge("disabled"), h("div", { class: "muted small" }, s.disabled_reason)]
                : badge(s.enabled ? "enabled" : "disabled"),
          },
          { title: "Last run", value: (s: Schedule) => time(s.last_run_at), sort: (s) => s.last_run_at ?? "" },
          { title: "Next run", value: (s: Schedule) => time(s.next_run_at), sort: (s) => s.next_run_at ?? "" },
          {
            title: "",
            value: (s: Schedule) =>
              isAdmin()
                ? h(
                    "div",
                    { class: "row actions" },
                    h("button", { class: "ghost small", on: { click: () => void patch(s, { enabled: !s.enabled }) } }, s.enabled ? "Disable" : "Enable"),
                    inlineEdit("Edit cron", { value: s.cron, placeholder: "sec min hour day month weekday" }, async (cron) => {
                      if (cron === s.cron) return;
                      await api(`/api/v1/schedules/${s.id}`, { method: "PATCH", body: { cron } });
                      toast(`${s.name}: ${cron}`, "ok");
                      await load();
                    }),
                    h(
                      "button",
                      {
                        class: "ghost small",
                        on: {
                          click: async () => {
                            if (!(await confirmDialog("Delete schedule", `Delete ${s.name}?`, "Delete"))) return;
                            await api(`/api/v1/schedules/${s.id}`, { method: "DELETE" }).catch(err);
                            await load();
                          },
                        },
                      },
                      "Delete",
                    ),
                  )
                : null,
          },
        ],
        page.items,
        { testid: "schedules", empty: "No schedules." },
      ),
    );
  };

  const name = h("input", { required: true, placeholder: "nightly-cleanup" });
  const cron = h("input", { required: true, value: "0 0 2 * * *", "aria-describedby": "cron-help" });
  const kind = h("select", null, kinds.map((k) => h("option", { value: k.kind }, `${k.kind} (${k.queue})`)));
  const params = h("textarea", { rows: 3 }, "{}");
  const create = form(
    null,
    async () => {
      let p: unknown;
      try {
        p = JSON.parse(params.value || "{}");
      } catch (x) {
        throw new Error(`Parameters are not JSON: ${x}`);
      }
      await api("/api/v1/schedules", { method: "POST", body: { name: name.value, cron: cron.value, job: { kind: kind.value, params: p }, enabled: true } });
      toast(`Schedule ${name.value} created`, "ok");
      await load();
    },
    h("div", { class: "row wrap" }, field("Name", name), field("Cron", cron, "Six fields with seconds, UTC: sec min hour day month weekday."), field("Job kind", kind)),
    field("Job parameters (JSON)", params),
    h("button", { type: "submit", class: "primary" }, "Create schedule"),
  );
  mount(root, h("h1", null, "Schedules"), card(null, list), isAdmin() ? card("New schedule", create) : null);
  await load();
};
