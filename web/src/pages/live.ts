// Live paper trading: account, kill switch, strategies (start / stop /
// restart / hot swap / logs), replay feeds, an order ticket, positions,
// orders, fills and PnL by strategy, all kept current over /ws.
import { api, canTrade, isAdmin } from "../api";
import { LiveLine, sec } from "../charts";
import { badge, card, confirmDialog, field, form, h, mount, showError as err, table, toast } from "../dom";
import { dec, list, num, sign, time } from "../format";
import type { Page } from "../page";
import { INTERVALS } from "./market";
import { allPlugins, type Plugin } from "./plugins";

interface Account {
  name: string;
  halted: boolean;
  halted_reason: string | null;
  initial_cash: string;
  cash: string;
  equity: string;
  margin: string;
  unrealized: string;
  day_pnl: string;
  pnl_by_strategy: Record<string, string>;
  open_orders: number;
}

interface Strategy {
  id: string;
  plugin: string;
  plugin_label: string;
  params: Record<string, number>;
  symbols: string[];
  account: string;
  interval: string;
  status: "running" | "stopped" | "failed";
  error: string | null;
  swaps: number;
  dropped: number;
  updated_at: number;
}

interface Order {
  id: string;
  account: string;
  strategy: string | null;
  client_id: string;
  symbol: string;
  side: "buy" | "sell";
  qty: string;
  type: string;
  price: string | null;
  state: string;
  filled_qty: string;
  avg_fill_price: string | null;
  reason: string | null;
}

interface Fill {
  seq: number;
  order_id: string;
  account: string;
  strategy: string | null;
  symbol: string;
  side: string;
  qty: string;
  price: string;
  commission: string;
  realized: string;
  ts: number;
}

interface Position {
  account: string;
  strategy: string | null;
  symbol: string;
  qty: string;
  avg_price: string;
  mark: string;
  realized: string;
  fees: string;
}

interface Replay {
  id: string;
  symbols: string[];
  speed: number;
  published: number;
  done: boolean;
  error: string | null;
}


export const livePage: Page = async (root, ctx) => {
  let account = new URLSearchParams(location.search).get("account") ?? "";
  // Only the accounts granted to this user (admins: all) are listed.
  const accounts = await api<Account[]>("/api/v1/trading/accounts");
  if (accounts.length === 0) {
    mount(
      root,
      h("h1", null, "Live trading"),
      card("No account", h("p", { "data-testid": "no-account" }, "No paper account is granted to you. An admin grants accounts; a trader may also open one through the API (POST /api/v1/trading/accounts).")),
    );
    return;
  }
  if (!account) account = accounts[0].name;
  const q = () => `account=${encodeURIComponent(account)}`;
  let plugins: Plugin[] = [];
  let strategies: Strategy[] = [];
  let fills: Fill[] = [];
  let orders: Order[] = [];
  let symbols: string[] = [];

  const accountBox = h("div");
  const strategiesBox = h("div");
  const positionsBox = h("div");
  const ordersBox = h("div");
  const fillsBox = h("div", { "data-testid": "live-fills" });
  const pnlBox = h("div");
  const replaysBox = h("div");
  const logsBox = h("div");
  const equityEl = h("div", { class: "chart short", "data-testid": "live-equity" });
  const equity = new LiveLine(equityEl);

  const accountSelect = h(
    "select",
    { "aria-label": "Account", on: { change: (e: Event) => ((account = (e.target as HTMLSelectElement).value), ctx.go(`/live?account=${account}`)) } },
    accounts.map((a) => h("option", { value: a.name, selected: a.name === account }, a.name)),
  );

  const kill = async () => {
    const ok = await confirmDialog(
      "Kill switch",
      `Cancel every open order of account ${account}, stop its strategies and halt it? Only cancels pass until an admin resumes.`,
      "Kill",
    );
    if (!ok) return;
    try {
      const r = await api<{ cancelled: string[]; stopped_strategies: string[] }>(`/api/v1/trading/kill?${q()}&reason=${encodeURIComponent("kill switch (dashboard)")}`, { method: "POST" });
      toast(`Halted ${account}: ${r.cancelled.length} orders cancelled, ${r.stopped_strategies.length} strategies stopped`, "ok");
      await Promise.all([loadAccount(), loadStrategies(), loadOrders(), ctx.refreshBanner()]);
    } catch (e) {
      err(e);
    }
  };

  const resume = async () => {
    try {
      await api(`/api/v1/trading/resume?${q()}`, { method: "POST" });
      toast(`Trading resumed on ${account}`, "ok");
      await Promise.all([loadAccount(), ctx.refreshBanner()]);
    } catch (e) {
      err(e);
    }
  };

  const loadAccount = async (known?: Account) => {
    const a = known ?? (await api<Account>(`/api/v1/trading/account?${q()}`));
    equity.push(sec(Date.now()), Number(a.equity));
    mount(
      accountBox,
      a.halted ? h("div", { class: "banner", role: "alert", "data-testid": "account-halted" }, h("strong", null, "HALTED"), ` ${a.halted_reason ?? ""}`) : null,
      h(
        "div",
        { class: "stats", "data-testid": "account" },
        [
          ["Equity", dec(a.equity), ""],
          ["Cash", dec(a.cash), ""],
          ["Unrealized", dec(a.unrealized), sign(a.unrealized)],
          ["Day PnL", dec(a.day_pnl), sign(a.day_pnl)],
          ["Margin", dec(a.margin), ""],
          ["Open orders", String(a.open_orders), ""],
        ].map(([k, v, c]) => h("div", { class: "stat" }, h("div", { class: "label" }, k), h("div", { class: `value ${c}` }, v))),
      ),
      h(
        "div",
        { class: "row" },
        canTrade() ? h("button", { class: "danger", "data-testid": "kill", disabled: a.halted, on: { click: () => void kill() } }, "Kill switch") : null,
        a.halted && isAdmin() ? h("button", { class: "primary", "data-testid": "resume", on: { click: () => void resume() } }, "Resume trading") : null,
      ),
    );
    const label = (id: string) => strategies.find((s) => s.id === id)?.plugin_label ?? id;
    mount(
      pnlBox,
      table(
        [
          { title: "Strategy", value: (r: [string, string]) => (r[0] === "" ? "manual" : `${label(r[0])} (${r[0].slice(0, 8)})`) },
          { title: "PnL", value: (r: [string, string]) => h("span", { class: sign(r[1]) }, dec(r[1])), sort: (r) => Number(r[1]), num: true },
        ],
        Object.entries(a.pnl_by_strategy),
        { testid: "pnl", empty: "No strategy PnL yet." },
      ),
    );
  };

  const swap = async (s: Strategy, to: string) => {
    try {
      await api(`/api/v1/strategies/${s.id}/swap`, { method: "POST", body: { plugin: to } });
      toast(`Swapped ${s.id.slice(0, 8)} to ${to}`, "ok");
    } catch (e) {
      err(e);
    }
    await loadStrategies();
  };

  const action = async (s: Strategy, verb: "stop" | "restart") => {
    try {
      await api(`/api/v1/strategies/${s.id}/${verb}`, { method: "POST" });
    } catch (e) {
      err(e);
    }
    await loadStrategies();
  };

  const showLogs = async (s: Strategy) => {
    const lines = await api<{ ts: number; level: string; message: string }[]>(`/api/v1/strategies/${s.id}/logs`);
    mount(logsBox, card(`Logs of ${s.plugin_label} (${s.id.slice(0, 8)})`, h("pre", { class: "logs" }, lines.map((l) => `${time(l.ts)} ${l.level.padEnd(5)} ${l.message}\n`).join("") || "(empty)")));
  };

  const loadStrategies = async () => {
    strategies = (await api<Strategy[]>("/api/v1/strategies")).filter((s) => s.account === account);
    mount(
      strategiesBox,
      table(
        [
          { title: "Strategy", value: (s: Strategy) => [h("strong", null, s.plugin_label), h("div", { class: "muted small" }, s.id.slice(0, 8))], sort: (s) => s.plugin_label },
          { title: "Symbols", value: (s: Strategy) => `${s.symbols.join(", ")} · ${s.interval}` },
          { title: "Params", value: (s: Strategy) => Object.entries(s.params).map(([k, v]) => `${k}=${v}`).join(" ") },
          { title: "Status", value: (s: Strategy) => [badge(s.status), s.error ? h("div", { class: "neg small" }, s.error) : null], sort: (s) => s.status },
          { title: "Dropped", value: (s: Strategy) => num(s.dropped, 0), num: true },
          {
            title: "",
            value: (s: Strategy) => {
              if (!canTrade()) return h("button", { class: "ghost small", on: { click: () => void showLogs(s) } }, "Logs");
              const to = h("select", { "aria-label": "Swap to" }, plugins.map((p) => h("option", { value: `${p.name}@${p.version}` }, `${p.name}@${p.version}`)));
              return h(
                "div",
                { class: "row wrap actions" },
                s.status === "running"
                  ? h("button", { class: "ghost small", on: { click: () => void action(s, "stop") } }, "Stop")
                  : h("button", { class: "ghost small", on: { click: () => void action(s, "restart") } }, "Restart"),
                h("button", { class: "ghost small", on: { click: () => void showLogs(s) } }, "Logs"),
                s.status === "running" ? [to, h("button", { class: "ghost small", on: { click: () => void swap(s, to.value) } }, "Hot swap")] : null,
              );
            },
          },
        ],
        strategies,
        { testid: "strategies", empty: "No strategies on this account." },
      ),
    );
  };

  const loadPositions = async () => {
    const ps = await api<Position[]>(`/api/v1/trading/positions?${q()}`);
    mount(
      positionsBox,
      table(
        [
          { title: "Symbol", value: (p: Position) => p.symbol, sort: (p) => p.symbol },
          { title: "Strategy", value: (p: Position) => (p.strategy ? p.strategy.slice(0, 8) : "account") },
          { title: "Qty", value: (p: Position) => h("span", { class: sign(p.qty) }, p.qty), num: true },
          { title: "Avg price", value: (p: Position) => dec(p.avg_price), num: true },
          { title: "Mark", value: (p: Position) => dec(p.mark), num: true },
          { title: "Realized", value: (p: Position) => h("span", { class: sign(p.realized) }, dec(p.realized)), num: true },
          { title: "Fees", value: (p: Position) => dec(p.fees), num: true },
        ],
        ps,
        { testid: "positions", empty: "Flat." },
      ),
    );
  };

  const cancel = async (o: Order) => {
    try {
      await api(`/api/v1/trading/orders/${o.id}?${q()}`, { method: "DELETE" });
    } catch (e) {
      err(e);
    }
    await loadOrders();
  };

  const drawOrders = () =>
    mount(
      ordersBox,
      table(
        [
          { title: "Order", value: (o: Order) => h("code", { title: o.id }, o.client_id || o.id.slice(0, 8)) },
          { title: "Strategy", value: (o: Order) => (o.strategy ? o.strategy.slice(0, 8) : "manual") },
          { title: "Symbol", value: (o: Order) => o.symbol, sort: (o) => o.symbol },
          { title: "Side", value: (o: Order) => h("span", { class: o.side === "buy" ? "pos" : "neg" }, o.side) },
          { title: "Qty", value: (o: Order) => `${o.filled_qty}/${o.qty}`, num: true },
          { title: "Type", value: (o: Order) => `${o.type}${o.price ? " @ " + o.price : ""}` },
          { title: "State", value: (o: Order) => [badge(o.state), o.reason ? h("div", { class: "muted small" }, o.reason) : null], sort: (o) => o.state },
          { title: "", value: (o: Order) => (canTrade() && ["new", "accepted", "partially_filled"].includes(o.state) ? h("button", { class: "ghost small", on: { click: () => void cancel(o) } }, "Cancel") : null) },
        ],
        orders.slice(0, 200),
        { testid: "orders", empty: "No orders." },
      ),
    );
  const loadOrders = async () => {
    orders = (await api<Order[]>(`/api/v1/trading/orders?${q()}&status=all`)).reverse();
    drawOrders();
  };

  const drawFills = () =>
    mount(
      fillsBox,
      table(
        [
          { title: "Time", value: (f: Fill) => time(f.ts), sort: (f) => f.ts },
          { title: "Strategy", value: (f: Fill) => (f.strategy ? f.strategy.slice(0, 8) : "manual") },
          { title: "Symbol", value: (f: Fill) => f.symbol },
          { title: "Side", value: (f: Fill) => h("span", { class: f.side === "buy" ? "pos" : "neg" }, f.side) },
          { title: "Qty", value: (f: Fill) => f.qty, num: true },
          { title: "Price", value: (f: Fill) => dec(f.price), num: true },
          { title: "Realized", value: (f: Fill) => h("span", { class: sign(f.realized) }, dec(f.realized)), num: true },
        ],
        fills.slice(0, 200),
        { testid: "fills", empty: "No fills yet." },
      ),
    );
  const loadFills = async () => {
    fills = (await api<Fill[]>(`/api/v1/trading/fills?${q()}`)).sort((a, b) => b.seq - a.seq);
    fillsBox.dataset.count = String(fills.length);
    drawFills();
  };

  const loadReplays = async () => {
    const rs = await api<Replay[]>("/api/v1/trading/replays");
    mount(
      replaysBox,
      table(
        [
          { title: "Replay", value: (r: Replay) => r.id.slice(0, 8) },
          { title: "Symbols", value: (r: Replay) => r.symbols.join(", ") },
          { title: "Speed", value: (r: Replay) => (r.speed === 0 ? "max" : `${r.speed}×`) },
          { title: "Published", value: (r: Replay) => num(r.published, 0), num: true },
          { title: "State", value: (r: Replay) => badge(r.error ? "failed" : r.done ? "done" : "running") },
          { title: "", value: (r: Replay) => (!r.done && canTrade() ? h("button", { class: "ghost small", on: { click: () => void api(`/api/v1/trading/replays/${r.id}`, { method: "DELETE" }).then(loadReplays, err) } }, "Stop") : null) },
        ],
        rs,
        { testid: "replays", empty: "No replays." },
      ),
    );
  };

  // ---- forms
  const startForm = () => {
    const plugin = h("select", { "data-testid": "strategy-plugin" }, plugins.map((p) => h("option", { value: p.id }, `${p.name}@${p.version}`)));
    const syms = h("input", { value: symbols[0] ?? "", placeholder: "IF2409", "data-testid": "strategy-symbols" });
    const interval = h("select", { "data-testid": "strategy-interval" }, ["tick", ...INTERVALS].map((iv) => h("option", { value: iv }, iv)));
    const params = h("div", { class: "row wrap" });
    let inputs: [string, HTMLInputElement][] = [];
    const draw = () => {
      const p = plugins.find((x) => x.id === plugin.value);
      inputs = (p?.params ?? []).map((pp) => [pp.name, h("input", { type: "number", value: String(pp.default), step: pp.type === "integer" ? "1" : "any", min: pp.min ?? false, max: pp.max ?? false })]);
      mount(params, inputs.map(([n, el]) => field(n, el)));
    };
    plugin.addEventListener("change", draw);
    draw();
    return form(
      null,
      async () => {
        const s = await api<Strategy>("/api/v1/strategies", {
          method: "POST",
          body: {
            plugin: plugin.value,
            params: Object.fromEntries(inputs.map(([n, el]) => [n, Number(el.value)])),
            symbols: list(syms.value),
            interval: interval.value,
            account,
          },
        });
        toast(`Started ${s.plugin_label}`, "ok");
        await loadStrategies();
      },
      h("div", { class: "row wrap" }, field("Plugin", plugin), field("Symbols", syms), field("Feed", interval)),
      params,
      h("button", { type: "submit", class: "primary", "data-testid": "strategy-start" }, "Start strategy"),
    );
  };

  const replayForm = () => {
    const syms = h("input", { value: symbols[0] ?? "", "data-testid": "replay-symbols" });
    const speed = h("input", { type: "number", min: 0, step: "any", value: "0", "data-testid": "replay-speed" });
    return form(
      null,
      async () => {
        await api("/api/v1/trading/replays", { method: "POST", body: { symbols: list(syms.value), speed: Number(speed.value) } });
        await loadReplays();
      },
      h("div", { class: "row wrap" }, field("Symbols", syms), field("Speed (0 = as fast as taken)", speed)),
      h("button", { type: "submit", class: "primary", "data-testid": "replay-start" }, "Replay stored ticks"),
    );
  };

  const ticket = () => {
    const sym = h("input", { value: symbols[0] ?? "" });
    const side = h("select", null, [h("option", { value: "buy" }, "buy"), h("option", { value: "sell" }, "sell")]);
    const qty = h("input", { value: "1", inputmode: "decimal" });
    const type = h("select", null, [h("option", { value: "market" }, "market"), h("option", { value: "limit" }, "limit")]);
    const price = h("input", { placeholder: "limit price", inputmode: "decimal" });
    return form(
      { class: "row wrap" },
      async () => {
        // One client id per submission: a retried request is one order.
        const clientId = `ui-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
        const body: Record<string, unknown> = { client_id: clientId, symbol: sym.value, side: side.value, qty: qty.value, type: type.value };
        if (type.value === "limit") body.price = price.value;
        try {
          const o = await api<Order>(`/api/v1/trading/orders?${q()}`, { method: "POST", body });
          toast(`Order ${o.state}`, "ok");
        } finally {
          await loadOrders();
        }
      },
      field("Symbol", sym),
      field("Side", side),
      field("Qty", qty),
      field("Type", type),
      field("Price", price),
      h("button", { type: "submit", class: "primary" }, "Send order"),
    );
  };

  [plugins, symbols] = await Promise.all([allPlugins(), api<{ symbol: string }[]>("/api/v1/market/symbols").then((c) => c.map((x) => x.symbol))]);
  mount(
    root,
    h("div", { class: "row" }, h("h1", null, "Live trading"), h("span", { class: "spacer" }), field("Account", accountSelect)),
    accountBox,
    h("div", { class: "grid2" }, card("Equity (this session)", equityEl), card("PnL by strategy", pnlBox)),
    card("Strategies", strategiesBox, canTrade() ? h("details", null, h("summary", null, "Start a strategy"), startForm()) : null),
    logsBox,
    h("div", { class: "grid2" }, card("Positions", positionsBox), card("Replay feeds", replaysBox, canTrade() ? replayForm() : null)),
    card("Orders", canTrade() ? h("details", null, h("summary", null, "Order ticket"), ticket()) : null, ordersBox),
    card("Fills", fillsBox),
  );
  // The account comes with the list already read (the trading API allows
  // 5 requests per second per client).
  await loadStrategies();
  await loadAccount(accounts.find((a) => a.name === account));
  await Promise.all([loadPositions(), loadOrders(), loadFills(), loadReplays()]);

  // Live: fills and orders from /ws; books refreshed at most once a second.
  let pending = false;
  const refreshBooks = () => {
    if (pending) return;
    pending = true;
    window.setTimeout(() => {
      pending = false;
      void Promise.all([loadAccount(), loadPositions()]).catch(() => undefined);
    }, 1000);
  };
  const offs = [
    ctx.live.on("fills", (f: Fill) => {
      if (f.account !== account) return;
      fills.unshift(f);
      fillsBox.dataset.count = String(fills.length);
      drawFills();
      refreshBooks();
    }),
    ctx.live.on("orders", (o: Order) => {
      if (o.account !== account) return;
      const i = orders.findIndex((x) => x.id === o.id);
      if (i >= 0) orders[i] = o;
      else orders.unshift(o);
      drawOrders();
    }),
    ctx.live.on("positions", refreshBooks),
    ctx.live.on("strategies", (ev: { id?: string; status?: string }) => {
      if (ev.status) void loadStrategies();
    }),
  ];
  const timer = window.setInterval(() => {
    void Promise.all([loadAccount(), loadReplays()]).catch(() => undefined);
  }, 5000);
  return () => {
    for (const off of offs) off();
    window.clearInterval(timer);
    equity.remove();
  };
};
