// Market data: symbols with coverage, a live candlestick + volume chart with
// an interval switch, and file imports with job progress.
import { api, canTrade } from "../api";
import { CandleChart, sec } from "../charts";
import { badge, card, describe, field, form, h, mount, progress, table, toast } from "../dom";
import { num, time } from "../format";
import type { Page } from "../page";
import { followJob, type Job } from "./jobs";

interface Coverage {
  symbol: string;
  ticks: number;
  first_ts: number | null;
  last_ts: number | null;
  bars: { interval: string; count: number; first_ts: number; last_ts: number }[];
}

interface BarOut {
  ts_ns: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
}

interface LiveBar {
  ts: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
  closed: boolean;
}

export const INTERVALS = ["1s", "1m", "5m", "15m", "1h", "1d"];

export const marketPage: Page = async (root, ctx) => {
  let symbols: Coverage[] = [];
  let current = new URLSearchParams(location.search).get("symbol") ?? "";
  let interval = new URLSearchParams(location.search).get("interval") ?? "1m";
  const list = h("div");
  const chartEl = h("div", { class: "chart tall", "data-testid": "candles" });
  const chartTitle = h("h2");
  const intervals = h("div", { class: "segmented", role: "group", "aria-label": "Interval" });
  const chart = new CandleChart(chartEl);
  let off: (() => void) | null = null;

  const loadSymbols = async () => {
    symbols = await api<Coverage[]>("/api/v1/market/symbols");
    mount(
      list,
      table(
        [
          {
            title: "Symbol",
            value: (c: Coverage) => h("button", { class: "link", "data-testid": `symbol-${c.symbol}`, on: { click: () => void select(c.symbol) } }, c.symbol),
            sort: (c) => c.symbol,
          },
          { title: "Ticks", value: (c: Coverage) => num(c.ticks, 0), sort: (c) => c.ticks, num: true },
          { title: "From", value: (c: Coverage) => time(c.first_ts ?? c.bars[0]?.first_ts) },
          { title: "To", value: (c: Coverage) => time(c.last_ts ?? c.bars[0]?.last_ts) },
          { title: "Imported bars", value: (c: Coverage) => c.bars.map((b) => `${b.interval} × ${b.count}`).join(", ") || "—" },
        ],
        symbols,
        { empty: "No market data yet: import a file below or post ticks to /api/v1/market/ticks.", testid: "symbols", initialSort: 0 },
      ),
    );
    if (!current && symbols.length) await select(symbols[0].symbol);
  };

  const drawIntervals = () =>
    mount(
      intervals,
      INTERVALS.map((iv) =>
        h(
          "button",
          {
            class: iv === interval ? "on" : "",
            "aria-pressed": iv === interval ? "true" : "false",
            on: { click: () => ((interval = iv), void select(current)) },
          },
          iv,
        ),
      ),
    );

  const select = async (symbol: string) => {
    current = symbol;
    drawIntervals();
    history.replaceState(null, "", `/market?symbol=${encodeURIComponent(symbol)}&interval=${interval}`);
    chartTitle.textContent = `${symbol} · ${interval}`;
    off?.();
    const bars = await api<BarOut[]>(`/api/v1/market/bars?symbol=${encodeURIComponent(symbol)}&interval=${interval}`);
    chart.set(bars.map((b) => ({ time: sec(b.ts_ns), open: b.open, high: b.high, low: b.low, close: b.close, volume: b.volume })));
    chartEl.dataset.bars = String(bars.length);
    off = ctx.live.on(`bars:${symbol}:${interval}`, (b: LiveBar) => {
      chart.update({ time: sec(b.ts), open: b.open, high: b.high, low: b.low, close: b.close, volume: b.volume });
      chartEl.dataset.liveUpdates = String(Number(chartEl.dataset.liveUpdates ?? 0) + 1);
    });
  };

  mount(
    root,
    h("h1", null, "Market"),
    card(null, h("div", { class: "row" }, chartTitle, h("span", { class: "spacer" }), intervals), chartEl),
    card("Symbols", list),
    canTrade() ? importCard(ctx, () => void loadSymbols()) : null,
  );
  drawIntervals();
  await loadSymbols();
  if (current) await select(current);
  return () => {
    off?.();
    chart.remove();
  };
};

interface ImportReport {
  rows_read: number;
  rows_stored: number;
  rows_duplicate: number;
  rows_rejected: number;
  rejections: { line: number; reason: string }[];
  symbols: string[];
}

function importReport(r: ImportReport): HTMLElement {
  return h(
    "div",
    { "data-testid": "import-result" },
    h(
      "p",
      null,
      badge("succeeded"),
      ` ${num(r.rows_read, 0)} rows read, ${num(r.rows_stored, 0)} stored, ${num(r.rows_duplicate, 0)} already stored, ${num(r.rows_rejected, 0)} rejected · ${r.symbols.join(", ")}`,
    ),
    r.rejections.length
      ? h("ul", { class: "problem" }, r.rejections.slice(0, 50).map((x) => h("li", null, `line ${x.line}: ${x.reason}`)))
      : null,
  );
}

function importCard(ctx: Parameters<Page>[1], done: () => void): HTMLElement {
  const file = h("input", { type: "file", name: "file", "data-testid": "import-file", accept: ".csv,.parquet,.txt" });
  const format = h("select", { name: "format" }, ["csv", "ctp", "bars_csv", "parquet"].map((f) => h("option", { value: f }, f)));
  const mode = h("select", { name: "mode" }, [h("option", { value: "strict" }, "strict: all or nothing"), h("option", { value: "skip" }, "skip bad rows")]);
  const tz = h("input", { name: "timezone", placeholder: "UTC", value: "" });
  const symbol = h("input", { name: "symbol", placeholder: "bars_csv: symbol" });
  const interval = h("input", { name: "interval", placeholder: "bars_csv: e.g. 1m" });
  const status = h("div", { "data-testid": "import-status", "aria-live": "polite" });
  const drop = h("div", { class: "dropzone", tabindex: 0 }, "Drop a CSV or Parquet file here, or choose one.", file);
  drop.addEventListener("dragover", (e) => (e.preventDefault(), drop.classList.add("over")));
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer?.files.length) file.files = e.dataTransfer.files;
  });
  const submit = h("button", { type: "submit", class: "primary", "data-testid": "import-submit" }, "Import");
  const upload = form(
    null,
    async () => {
      const f = file.files?.[0];
      if (!f) return toast("Choose a file first.", "error");
      const body = new FormData();
      body.set("format", format.value);
      body.set("mode", mode.value);
      if (tz.value) body.set("timezone", tz.value);
      if (symbol.value) body.set("symbol", symbol.value);
      if (interval.value) body.set("interval", interval.value);
      body.set("file", f, f.name);
      try {
        const job = await api<Job>("/api/v1/market/imports", { method: "POST", raw: body });
        const final = await followJob(ctx, job.id, (j) => mount(status, h("div", { class: "row" }, badge(j.state), progress(j.progress), h("span", null, j.message ?? ""))));
        if (final.state === "succeeded") {
          toast(`Imported ${f.name}`, "ok");
          mount(status, importReport(final.result as ImportReport));
          done();
        } else {
          mount(status, h("div", { class: "problem" }, badge(final.state), h("pre", null, final.error ?? "")));
        }
      } catch (err) {
        // Shown beside the form (line numbers included), as the API states it.
        mount(status, h("div", { class: "problem" }, describe(err)));
      }
    },
    drop,
    h("div", { class: "row wrap" }, field("Format", format), field("Mode", mode), field("Time zone", tz), field("Symbol", symbol), field("Interval", interval)),
    submit,
    status,
  );
  return card("Import data", upload);
}
