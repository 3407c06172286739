// Jobs: filterable list, live state over /ws, cancel, detail.
import { api, canTrade, type Page as PageOf } from "../api";
import { badge, card, field, h, mount, pager, progress, showError, table, toast } from "../dom";
import { ago, time } from "../format";
import type { Page } from "../page";

export interface Job {
  id: string;
  queue: string;
  kind: string;
  params: unknown;
  state: "queued" | "running" | "succeeded" | "failed" | "cancelled";
  progress: number;
  message: string | null;
  result: unknown;
  error: string | null;
  attempts: number;
  created_by: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

export const FINAL = ["succeeded", "failed", "cancelled"];

export const jobsPage: Page = async (root, ctx) => {
  const state = h("select", { name: "state" }, ["", "queued", "running", "succeeded", "failed", "cancelled"].map((s) => h("option", { value: s }, s || "any")));
  const queue = h("select", { name: "queue" }, ["", "backtest", "data"].map((s) => h("option", { value: s }, s || "any")));
  const list = h("div");
  const detail = h("div");
  const pages = h("div", { class: "row" });
  let page = 1;
  let jobs: Job[] = [];

  const show = (j: Job) =>
    mount(
      detail,
      card(
        `Job ${j.id}`,
        h("dl", { class: "kv" }, [
          ["Kind", j.kind],
          ["Queue", j.queue],
          ["State", j.state],
          ["Attempts", String(j.attempts)],
          ["By", j.created_by ?? "—"],
          ["Created", time(j.created_at)],
          ["Started", time(j.started_at)],
          ["Finished", time(j.finished_at)],
          ["Message", j.message ?? "—"],
          ["Error", j.error ?? "—"],
        ].map(([k, v]) => [h("dt", null, k), h("dd", null, v)])),
        h("h3", null, "Parameters"),
        h("pre", null, JSON.stringify(j.params, null, 2)),
        j.result ? [h("h3", null, "Result"), h("pre", null, JSON.stringify(j.result, null, 2))] : null,
      ),
    );

  const cancel = async (j: Job) => {
    try {
      await api(`/api/v1/jobs/${j.id}/cancel`, { method: "POST" });
      toast(`Cancel requested for ${j.kind}`, "ok");
      await load();
    } catch (e) {
      showError(e);
    }
  };

  const draw = () =>
    mount(
      list,
      table(
        [
          { title: "Kind", value: (j: Job) => h("button", { class: "link", on: { click: () => show(j) } }, j.kind), sort: (j) => j.kind },
          { title: "Queue", value: (j: Job) => j.queue, sort: (j) => j.queue },
          { title: "State", value: (j: Job) => badge(j.state), sort: (j) => j.state },
          { title: "Progress", value: (j: Job) => progress(j.progress), sort: (j) => j.progress },
          { title: "Message", value: (j: Job) => j.error ?? j.message ?? "" },
          { title: "Created", value: (j: Job) => ago(j.created_at), sort: (j) => j.created_at },
          {
            title: "",
            value: (j: Job) => (canTrade() && !FINAL.includes(j.state) ? h("button", { class: "ghost small", on: { click: () => void cancel(j) } }, "Cancel") : null),
          },
        ],
        jobs,
        { empty: "No jobs match.", testid: "jobs" },
      ),
    );

  const load = async () => {
    const q = new URLSearchParams({ page: String(page), page_size: "25" });
    if (state.value) q.set("state", state.value);
    if (queue.value) q.set("queue", queue.value);
    const res = await api<PageOf<Job>>(`/api/v1/jobs?${q}`);
    jobs = res.items;
    draw();
    pager(pages, page, res.total, res.page_size, "jobs", (p) => ((page = p), void load()));
  };
  state.addEventListener("change", () => ((page = 1), void load()));
  queue.addEventListener("change", () => ((page = 1), void load()));

  mount(root, h("h1", null, "Jobs"), h("div", { class: "row filters" }, field("State", state), field("Queue", queue)), card(null, list, pages), detail);
  await load();
  // Live: job events update rows in place.
  // Events carry id, kind, state, progress and message; rows are merged,
  // and a job not on the page yet reloads the first page.
  return ctx.live.on("jobs", (j: Partial<Job> & { id: string }) => {
    const i = jobs.findIndex((x) => x.id === j.id);
    if (i >= 0) {
      jobs[i] = { ...jobs[i], ...j };
      draw();
    } else if (page === 1) {
      void load().catch(() => undefined);
    }
  });
};

/** Waits for a job to finish, reporting progress; resolves with the final job. */
export function followJob(ctx: { live: { on: (c: string, f: (j: Job) => void) => () => void } }, id: string, onUpdate: (j: Job) => void): Promise<Job> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (j: Job) => {
      onUpdate(j);
      if (FINAL.includes(j.state) && !done) {
        done = true;
        off();
        window.clearInterval(poll);
        resolve(j);
      }
    };
    const off = ctx.live.on("jobs", (j: Job) => {
      if (j.id !== id) return;
      // Events carry state and progress; the final record (result) is read back.
      if (FINAL.includes(j.state)) void api<Job>(`/api/v1/jobs/${id}`).then(finish).catch(() => undefined);
      else onUpdate(j);
    });
    // Polling as well: events may pass before the subscription is active.
    const poll = window.setInterval(() => {
      void api<Job>(`/api/v1/jobs/${id}`).then(finish).catch(() => undefined);
    }, 1500);
    void api<Job>(`/api/v1/jobs/${id}`).then(finish).catch(() => undefined);
  });
}
