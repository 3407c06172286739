// Host, queues, recent jobs, ingest rate, strategies and account equity.
import { api, type Page as PageOf } from "../api";
import { badge, card, h, mount, progress, table } from "../dom";
import { ago, bytes, dec, duration, num, pct, sign } from "../format";
import type { Page } from "../page";
import type { Job } from "./jobs";

interface SystemInfo {
  version: string;
  env: string;
  uptime_seconds: number;
  host: {
    cpu_percent: number;
    cpus: number;
    memory_total_bytes: number;
    memory_used_bytes: number;
    disk_total_bytes: number;
    disk_available_bytes: number;
  };
  queues: { queue: string; queued: number; running: number }[];
  ticks_ingested_total: number;
}

interface Account {
  name: string;
  halted: boolean;
  equity: string;
  cash: string;
  day_pnl: string;
  unrealized: string;
  open_orders: number;
}

interface Strategy {
  id: string;
  plugin_label: string;
  status: string;
  symbols: string[];
  account: string;
}

function gauge(label: string, value: string, fraction: number | null, testid: string): HTMLElement {
  return h("div", { class: "stat", "data-testid": testid }, h("div", { class: "label" }, label), h("div", { class: "value" }, value), fraction === null ? null : progress(fraction));
}

export const overviewPage: Page = async (root) => {
  const stats = h("div", { class: "stats" });
  const queues = h("div");
  const jobs = h("div");
  const strategies = h("div");
  const accounts = h("div");
  mount(
    root,
    h("h1", null, "Overview"),
    stats,
    h("div", { class: "grid2" }, card("Queues", queues), card("Accounts", accounts)),
    h("div", { class: "grid2" }, card("Running strategies", strategies), card("Recent jobs", jobs)),
  );
  let lastIngest: { at: number; total: number } | null = null;
  let rate: number | null = null;

  const refresh = async () => {
    const [sys, recent, strats, accts] = await Promise.all([
      api<SystemInfo>("/api/v1/system"),
      api<PageOf<Job>>("/api/v1/jobs?page_size=8"),
      api<Strategy[]>("/api/v1/strategies"),
      api<Account[]>("/api/v1/trading/accounts"),
    ]);
    const now = performance.now();
    if (lastIngest) rate = ((sys.ticks_ingested_total - lastIngest.total) * 1000) / (now - lastIngest.at);
    lastIngest = { at: now, total: sys.ticks_ingested_total };
    const hst = sys.host;
    const memUsed = hst.memory_used_bytes / Math.max(1, hst.memory_total_bytes);
    const diskUsed = 1 - hst.disk_available_bytes / Math.max(1, hst.disk_total_bytes);
    const running = strats.filter((s) => s.status === "running");
    mount(
      stats,
      gauge("CPU", `${num(hst.cpu_percent, 1)}% of ${hst.cpus}`, hst.cpu_percent / 100, "cpu"),
      gauge("Memory", `${bytes(hst.memory_used_bytes)} / ${bytes(hst.memory_total_bytes)}`, memUsed, "memory"),
      gauge("Disk (data)", `${bytes(hst.disk_available_bytes)} free`, diskUsed, "disk"),
      gauge("Ingest", rate === null ? `${num(sys.ticks_ingested_total, 0)} ticks` : `${num(rate, 1)} ticks/s`, null, "ingest"),
      gauge("Strategies", `${running.length} running`, null, "strategies"),
      gauge("Server", `${sys.version} · up ${duration(sys.uptime_seconds)}`, null, "server"),
    );
    mount(
      queues,
      table(
        [
          { title: "Queue", value: (q) => q.queue },
          { title: "Queued", value: (q) => q.queued, num: true },
          { title: "Running", value: (q) => q.running, num: true },
        ],
        sys.queues,
        { testid: "queues" },
      ),
    );
    mount(
      jobs,
      table(
        [
          { title: "Kind", value: (j: Job) => j.kind },
          { title: "State", value: (j: Job) => badge(j.state) },
          { title: "Progress", value: (j: Job) => pct(j.progress, 0), num: true },
          { title: "Created", value: (j: Job) => ago(j.created_at) },
        ],
        recent.items,
        { empty: "No jobs yet.", testid: "recent-jobs" },
      ),
    );
    mount(
      strategies,
      table(
        [
          { title: "Strategy", value: (s: Strategy) => s.plugin_label },
          { title: "Symbols", value: (s: Strategy) => s.symbols.join(", ") },
          { title: "Account", value: (s: Strategy) => s.account },
        ],
        running,
        { empty: "None running." },
      ),
    );
    mount(
      accounts,
      table(
        [
          { title: "Account", value: (a: Account) => [a.name, a.halted ? badge("HALTED", "failed") : null] },
          { title: "Equity", value: (a: Account) => dec(a.equity), num: true },
          { title: "Day PnL", value: (a: Account) => h("span", { class: sign(a.day_pnl) }, dec(a.day_pnl)), num: true },
          { title: "Open orders", value: (a: Account) => a.open_orders, num: true },
        ],
        accts,
        { testid: "accounts" },
      ),
    );
  };
  await refresh();
  const timer = window.setInterval(() => void refresh().catch(() => undefined), 5000);
  return () => window.clearInterval(timer);
};
