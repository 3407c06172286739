// Backtests: a form built from the plugin's parameter schema, the list,
// one backtest's progress and results, and parameter sweeps.
import { api, canTrade, download, send, type Page as PageOf } from "../api";
import { equityCharts, sec } from "../charts";
import { badge, card, describe, field, form, h, mount, progress, showError, table } from "../dom";
import { ago, dec, list, num, pct, time } from "../format";
import type { Page, PageCtx } from "../page";
import { FINAL, followJob, type Job } from "./jobs";
import { INTERVALS } from "./market";
import { allPlugins, type Plugin, type PluginParam } from "./plugins";

interface Backtest {
  id: string;
  status: Job["state"];
  progress: number;
  settings: Record<string, any>;
  metrics: Record<string, number> | null;
  final_equity: string | null;
  result_hash: string | null;
  error: string | null;
  created_at: string;
  finished_at: string | null;
}

interface SweepRow {
  id: string;
  params: Record<string, number>;
  status: string;
  metrics: Record<string, number> | null;
  final_equity: string | null;
  error: string | null;
}

interface Sweep {
  id: string;
  status: string;
  grid: Record<string, number[]>;
  rows: SweepRow[];
  done: number;
  best: string | null;
}

const METRICS: [string, (x: number) => string][] = [
  ["total_return", (x) => pct(x)],
  ["cagr", (x) => pct(x)],
  ["sharpe", (x) => num(x, 2)],
  ["sortino", (x) => num(x, 2)],
  ["max_drawdown", (x) => pct(x)],
  ["calmar", (x) => num(x, 2)],
  ["volatility", (x) => pct(x)],
  ["win_rate", (x) => pct(x)],
  ["profit_factor", (x) => num(x, 2)],
  ["round_trips", (x) => num(x, 0)],
  ["exposure", (x) => pct(x)],
  ["total_fees", (x) => num(x, 2)],
];

const label = (k: string) => k.replace(/_/g, " ");

/** An input for one declared parameter, with its bounds. */
function paramInput(p: PluginParam): HTMLInputElement {
  if (p.type === "boolean") {
    return h("input", { type: "checkbox", name: p.name, checked: p.default !== 0 });
  }
  return h("input", {
    type: "number",
    name: p.name,
    value: String(p.default),
    step: p.type === "integer" ? "1" : "any",
    min: p.min ?? false,
    max: p.max ?? false,
    required: true,
  });
}

function paramValue(p: PluginParam, el: HTMLInputElement): number {
  return p.type === "boolean" ? (el.checked ? 1 : 0) : Number(el.value);
}

async function symbolsKnown(): Promise<string[]> {
  const cov = await api<{ symbol: string }[]>("/api/v1/market/symbols");
  return cov.map((c) => c.symbol);
}

function newBacktestCard(ctx: PageCtx, plugins: Plugin[], symbols: string[]): HTMLElement {
  const plugin = h("select", { name: "plugin", "data-testid": "bt-plugin" }, plugins.map((p) => h("option", { value: p.id }, `${p.name}@${p.version}`)));
  const syms = h("select", { name: "symbols", multiple: true, size: Math.min(4, Math.max(2, symbols.length)), "data-testid": "bt-symbols" }, symbols.map((s, i) => h("option", { value: s, selected: i === 0 }, s)));
  const interval = h("select", { name: "interval" }, ["tick", ...INTERVALS].map((iv) => h("option", { value: iv, selected: iv === "1m" }, iv)));
  const start = h("input", { name: "start", placeholder: "2024-01-02T00:00:00Z" });
  const end = h("input", { name: "end", placeholder: "(all data)" });
  const cash = h("input", { name: "initial_cash", value: "1000000", inputmode: "decimal" });
  const commission = h("input", { name: "commission_rate", value: "0", inputmode: "decimal" });
  const slippage = h("input", { name: "slippage_ticks", type: "number", min: 0, value: "0" });
  const paramsBox = h("fieldset", { class: "params-form" });
  const sweepBox = h("fieldset", { class: "params-form" });
  const sweepMode = h("input", { type: "checkbox", name: "sweep" });
  const status = h("div", { "aria-live": "polite", "data-testid": "bt-status" });
  let inputs: [PluginParam, HTMLInputElement, HTMLInputElement][] = [];

  const drawParams = () => {
    const p = plugins.find((x) => x.id === plugin.value);
    inputs = (p?.params ?? []).map((pp) => [pp, paramInput(pp), h("input", { name: `grid-${pp.name}`, placeholder: `e.g. ${pp.default}, ${pp.default * 2}` })]);
    mount(paramsBox, h("legend", null, "Parameters"), inputs.length ? inputs.map(([pp, el]) => field(pp.name, el, pp.description)) : h("p", { class: "muted" }, "This plugin declares no parameters."));
    mount(sweepBox, h("legend", null, "Sweep grid (comma-separated values; empty = the parameter above)"), inputs.map(([pp, , g]) => field(`${pp.name} values`, g)));
    sweepBox.hidden = !sweepMode.checked;
  };
  plugin.addEventListener("change", drawParams);
  sweepMode.addEventListener("change", () => (sweepBox.hidden = !sweepMode.checked));

  const submit = h("button", { type: "submit", class: "primary", "data-testid": "bt-run" }, "Run backtest");
  const run = form(
    null,
    async () => {
      const params: Record<string, number> = {};
      for (const [pp, el] of inputs) params[pp.name] = paramValue(pp, el);
      const body: Record<string, unknown> = {
        plugin: plugin.value,
        params,
        symbols: [...syms.selectedOptions].map((o) => o.value),
        interval: interval.value,
      };
      if (start.value) body.start = start.value;
      if (end.value) body.end = end.value;
      if (cash.value) body.initial_cash = cash.value;
      if (commission.value && commission.value !== "0") body.commission_rate = commission.value;
      if (slippage.value && slippage.value !== "0") body.slippage_ticks = Number(slippage.value);
      try {
        if (sweepMode.checked) {
          const grid: Record<string, number[]> = {};
          for (const [pp, , g] of inputs) {
            const vals = list(g.value).map(Number);
            if (vals.length) grid[pp.name] = vals;
          }
          const sweep = await api<Sweep>("/api/v1/sweeps", { method: "POST", body: { base: body, grid } });
          ctx.go(`/sweeps/${sweep.id}`);
        } else {
          const bt = await api<Backtest>("/api/v1/backtests", { method: "POST", body });
          ctx.go(`/backtests/${bt.id}`);
        }
      } catch (err) {
        // Shown beside the form, field by field, as the API states it.
        mount(status, h("div", { class: "problem", role: "alert" }, describe(err)));
      }
    },
    h("div", { class: "row wrap" }, field("Plugin", plugin), field("Symbols", syms), field("Interval", interval), field("Start", start), field("End", end)),
    h("div", { class: "row wrap" }, field("Initial cash", cash), field("Commission rate", commission), field("Slippage (ticks)", slippage)),
    paramsBox,
    h("label", { class: "check" }, sweepMode, " Parameter sweep"),
    sweepBox,
    submit,
    status,
  );
  drawParams();
  return card("New backtest", plugins.length ? run : h("p", { class: "muted" }, "Upload a strategy plugin first (Plugins page)."));
}

export const backtestsPage: Page = async (root, ctx) => {
  const list = h("div");
  const [plugins, symbols] = await Promise.all([allPlugins(), symbolsKnown()]);
  const load = async () => {
    const page = await api<PageOf<Backtest>>("/api/v1/backtests?page_size=50");
    mount(
      list,
      table(
        [
          { title: "Backtest", value: (b: Backtest) => h("a", { href: `/backtests/${b.id}`, on: { click: (e: Event) => (e.preventDefault(), ctx.go(`/backtests/${b.id}`)) } }, b.id.slice(0, 8)) },
          { title: "Plugin", value: (b: Backtest) => String(b.settings?.plugin_label ?? b.settings?.plugin ?? ""), sort: (b) => String(b.settings?.plugin ?? "") },
          { title: "Symbols", value: (b: Backtest) => (b.settings?.symbols ?? []).join(", ") },
          { title: "Status", value: (b: Backtest) => (b.status === "running" ? progress(b.progress) : badge(b.status)), sort: (b) => b.status },
          { title: "Return", value: (b: Backtest) => pct(b.metrics?.total_return), sort: (b) => b.metrics?.total_return ?? -Infinity, num: true },
          { title: "Sharpe", value: (b: Backtest) => num(b.metrics?.sharpe), sort: (b) => b.metrics?.sharpe ?? -Infinity, num: true },
          { title: "Max DD", value: (b: Backtest) => pct(b.metrics?.max_drawdown), sort: (b) => b.metrics?.max_drawdown ?? -Infinity, num: true },
          { title: "Created", value: (b: Backtest) => ago(b.created_at), sort: (b) => b.created_at },
        ],
        page.items,
        { empty: "No backtests yet.", testid: "backtests" },
      ),
    );
  };
  mount(root, h("h1", null, "Backtests"), canTrade() ? newBacktestCard(ctx, plugins, symbols) : null, card("Recent", list));
  await load();
  return ctx.live.on("jobs", (j: Job) => {
    if (j.kind === "backtest.run" && FINAL.includes(j.state)) void load();
  });
};

function parseCsv(text: string): Record<string, string>[] {
  const [head, ...lines] = text.trim().split(/\r?\n/);
  if (!head) return [];
  const cols = head.split(",");
  return lines.filter(Boolean).map((l) => {
    const cells = l.split(",");
    return Object.fromEntries(cols.map((c, i) => [c, cells[i] ?? ""]));
  });
}

export const backtestPage: Page = async (root, ctx) => {
  const id = ctx.params.id;
  const head = h("div");
  const body = h("div");
  mount(root, h("p", null, h("a", { href: "/backtests", on: { click: (e: Event) => (e.preventDefault(), ctx.go("/backtests")) } }, "‹ Backtests")), head, body);
  let disposeCharts: (() => void) | null = null;
  let stop = false;

  const header = (b: Backtest) =>
    mount(
      head,
      h("h1", null, `Backtest ${id.slice(0, 8)} `, badge(b.status)),
      h("p", { class: "muted" }, `${b.settings?.plugin_label ?? b.settings?.plugin ?? ""} · ${(b.settings?.symbols ?? []).join(", ")} · ${b.settings?.interval ?? ""} · ${time(b.created_at)}`),
      FINAL.includes(b.status) ? null : h("div", { "data-testid": "bt-progress" }, progress(b.progress)),
      b.error ? h("div", { class: "problem", role: "alert" }, b.error) : null,
    );

  let b = await api<Backtest>(`/api/v1/backtests/${id}`);
  header(b);
  if (!FINAL.includes(b.status)) {
    await followJob(ctx, id, (j) => {
      if (!stop) header({ ...b, status: j.state, progress: j.progress, error: j.error });
    });
    if (stop) return;
    b = await api<Backtest>(`/api/v1/backtests/${id}`);
    header(b);
  }
  if (b.status !== "succeeded" || stop) return;

  const [equityCsv, tradesCsv, fills] = await Promise.all([
    send(`/api/v1/backtests/${id}/files/equity.csv`).then((r) => r.text()),
    send(`/api/v1/backtests/${id}/files/trades.csv`).then((r) => r.text()),
    api<{ ts: number; symbol: string; side: string; qty: string; price: string; commission: string }[]>(`/api/v1/backtests/${id}/fills`),
  ]);
  const equity = parseCsv(equityCsv).map((r) => ({ time: sec(Number(r.ts)), value: Number(r.equity) }));
  const trades = parseCsv(tradesCsv);
  const eqEl = h("div", { class: "chart", "data-testid": "equity-chart", "data-points": String(equity.length) });
  const ddEl = h("div", { class: "chart short", "data-testid": "drawdown-chart" });
  const m = b.metrics ?? {};
  const files = ["report.html", "fills.csv", "equity.csv", "trades.csv", "fills.parquet", "equity.parquet", "trades.parquet"];
  mount(
    body,
    h(
      "div",
      { class: "stats", "data-testid": "metrics" },
      h("div", { class: "stat" }, h("div", { class: "label" }, "final equity"), h("div", { class: "value" }, dec(b.final_equity))),
      METRICS.map(([k, f]) => h("div", { class: "stat", "data-metric": k }, h("div", { class: "label" }, label(k)), h("div", { class: "value" }, f(m[k])))),
    ),
    card("Equity", eqEl, h("h3", null, "Drawdown"), ddEl),
    card(
      "Downloads",
      h(
        "div",
        { class: "row wrap" },
        files.map((f) =>
          h(
            "button",
            {
              class: "ghost",
              "data-testid": `download-${f}`,
              on: {
                click: () =>
                  void download(f === "report.html" ? `/reports/${id}.html` : `/api/v1/backtests/${id}/files/${f}`, f === "report.html" ? `backtest-${id}.html` : `${id}-${f}`).catch(showError),
              },
            },
            f,
          ),
        ),
      ),
      h("small", { class: "muted" }, `result hash ${b.result_hash ?? "—"}`),
    ),
    h(
      "div",
      { class: "grid2" },
      card(
        `Round trips (${trades.length})`,
        table(
          Object.keys(trades[0] ?? { symbol: "" }).map((c) => ({
            title: label(c),
            value: (r: Record<string, string>) => (c.endsWith("_ts") ? time(Number(r[c])) : c === "pnl" ? h("span", { class: Number(r[c]) >= 0 ? "pos" : "neg" }, r[c]) : r[c]),
            sort: (r: Record<string, string>) => (Number.isNaN(Number(r[c])) ? r[c] : Number(r[c])),
          })),
          trades,
          { testid: "trades", empty: "No round trips." },
        ),
      ),
      card(
        `Fills (${fills.length})`,
        table(
          [
            { title: "Time", value: (f) => time(f.ts), sort: (f) => f.ts },
            { title: "Symbol", value: (f) => f.symbol },
            { title: "Side", value: (f) => h("span", { class: f.side === "buy" ? "pos" : "neg" }, f.side) },
            { title: "Qty", value: (f) => f.qty, num: true },
            { title: "Price", value: (f) => f.price, num: true },
            { title: "Fee", value: (f) => f.commission, num: true },
          ],
          fills,
          { testid: "fills", empty: "No fills." },
        ),
      ),
    ),
  );
  disposeCharts = equityCharts(eqEl, ddEl, equity);
  return () => {
    stop = true;
    disposeCharts?.();
  };
};

/** The best run's parameters, as the server ranks them. */
function best(s: Sweep): string {
  const row = s.rows.find((r) => r.id === s.best);
  if (!row) return "";
  return ` · best by sharpe: ${Object.entries(row.params).map(([k, v]) => `${k}=${v}`).join(", ")}`;
}

export const sweepPage: Page = async (root, ctx) => {
  const id = ctx.params.id;
  const body = h("div");
  mount(root, h("p", null, h("a", { href: "/backtests", on: { click: (e: Event) => (e.preventDefault(), ctx.go("/backtests")) } }, "‹ Backtests")), h("h1", null, `Sweep ${id.slice(0, 8)}`), body);
  const load = async () => {
    const s = await api<Sweep>(`/api/v1/sweeps/${id}?sort=sharpe&order=desc`);
    const names = Object.keys(s.grid);
    mount(
      body,
      h("p", null, badge(s.status), ` ${s.done} of ${s.rows.length || "?"} runs done`, best(s)),
      card(
        null,
        table(
          [
            ...names.map((n) => ({ title: n, value: (r: SweepRow) => num(r.params[n], 6), sort: (r: SweepRow) => r.params[n], num: true })),
            { title: "Status", value: (r: SweepRow) => badge(r.status), sort: (r: SweepRow) => r.status },
            ...["total_return", "sharpe", "max_drawdown", "win_rate", "round_trips"].map((k) => ({
              title: label(k),
              value: (r: SweepRow) => (r.metrics ? (METRICS.find(([m]) => m === k)?.[1] ?? String)(r.metrics[k]) : r.error ?? "—"),
              sort: (r: SweepRow) => r.metrics?.[k] ?? -Infinity,
              num: true,
            })),
            { title: "Final equity", value: (r: SweepRow) => dec(r.final_equity), sort: (r: SweepRow) => Number(r.final_equity ?? -Infinity), num: true },
            { title: "", value: (r: SweepRow) => h("a", { href: `/backtests/${r.id}`, on: { click: (e: Event) => (e.preventDefault(), ctx.go(`/backtests/${r.id}`)) } }, "open") },
          ],
          s.rows,
          { testid: "sweep-rows", initialSort: names.length + 2, desc: true },
        ),
      ),
    );
    return s;
  };
  const s = await load();
  if (FINAL.includes(s.status) && s.done === s.rows.length) return;
  const timer = window.setInterval(() => void load().then((x) => FINAL.includes(x.status) && x.done === x.rows.length && window.clearInterval(timer)), 2000);
  return () => window.clearInterval(timer);
};
