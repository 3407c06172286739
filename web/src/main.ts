// The dashboard shell: session, navigation, client-side routes, the live
// socket and the HALTED banner.
import "./style.css";
import { api, isAdmin, logout, me, onSession, resume } from "./api";
import { h, mount, toast } from "./dom";
import { Live } from "./ws";
import type { Page, PageCtx } from "./page";
import { loginPage } from "./pages/login";
import { overviewPage } from "./pages/overview";
import { marketPage } from "./pages/market";
import { pluginsPage } from "./pages/plugins";
import { backtestsPage, backtestPage, sweepPage } from "./pages/backtests";
import { livePage } from "./pages/live";
import { schedulesPage } from "./pages/schedules";
import { jobsPage } from "./pages/jobs";
import { usersPage } from "./pages/users";
import { auditPage } from "./pages/audit";

interface Route {
  pattern: RegExp;
  page: Page;
  title: string;
  nav?: string;
  admin?: boolean;
}

const routes: Route[] = [
  { pattern: /^\/$/, page: overviewPage, title: "Overview", nav: "/" },
  { pattern: /^\/market$/, page: marketPage, title: "Market", nav: "/market" },
  { pattern: /^\/plugins$/, page: pluginsPage, title: "Plugins", nav: "/plugins" },
  { pattern: /^\/backtests$/, page: backtestsPage, title: "Backtests", nav: "/backtests" },
  { pattern: /^\/backtests\/(?<id>[^/]+)$/, page: backtestPage, title: "Backtest" },
  { pattern: /^\/sweeps\/(?<id>[^/]+)$/, page: sweepPage, title: "Sweep" },
  { pattern: /^\/live$/, page: livePage, title: "Live", nav: "/live" },
  { pattern: /^\/schedules$/, page: schedulesPage, title: "Schedules", nav: "/schedules" },
  { pattern: /^\/jobs$/, page: jobsPage, title: "Jobs", nav: "/jobs" },
  { pattern: /^\/users$/, page: usersPage, title: "Users & keys", nav: "/users", admin: true },
  { pattern: /^\/audit$/, page: auditPage, title: "Audit log", nav: "/audit", admin: true },
];

const app = document.getElementById("app")!;
let live: Live | null = null;
let cleanup: (() => void) | void = undefined;
let bannerTimer: number | undefined;
let expiredNotice = false;

function go(path: string, replace = false): void {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  void render();
}

function link(path: string, label: string, current: string): HTMLElement {
  return h(
    "a",
    {
      href: path,
      class: current === path ? "active" : "",
      "aria-current": current === path ? "page" : false,
      on: {
        click: (e: MouseEvent) => {
          if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
          e.preventDefault();
          document.body.classList.remove("nav-open");
          go(path);
        },
      },
    },
    label,
  );
}

async function render(): Promise<void> {
  if (typeof cleanup === "function") cleanup();
  cleanup = undefined;
  const path = location.pathname;
  if (!me) {
    live?.close();
    live = null;
    window.clearInterval(bannerTimer);
    document.title = "Sign in · quantbox";
    const notice = expiredNotice ? "Your session expired; sign in again." : null;
    expiredNotice = false;
    cleanup = loginPage(app, { notice, done: () => go(path === "/login" ? "/" : path + location.search, true) });
    return;
  }
  if (path === "/login") return go("/", true);
  const route = routes.find((r) => r.pattern.test(path) && (!r.admin || isAdmin()));
  if (!live) {
    live = new Live();
    live.onState = (up) => document.getElementById("ws-state")?.classList.toggle("up", up);
  }
  const main = h("main", { id: "main", tabindex: -1 });
  const banner = h("div", { id: "halted-banner", class: "banner hidden", role: "alert" });
  const navLinks = routes.filter((r) => r.nav && (!r.admin || isAdmin())).map((r) => link(r.nav!, r.title, route?.nav ?? ""));
  mount(
    app,
    h("a", { class: "skip", href: "#main" }, "Skip to content"),
    h(
      "header",
      { class: "top" },
      h(
        "button",
        { class: "ghost menu", "aria-label": "Menu", on: { click: () => document.body.classList.toggle("nav-open") } },
        "☰",
      ),
      h("span", { class: "brand" }, "quantbox"),
      h("span", { id: "ws-state", class: `ws-state ${live.up ? "up" : ""}`, title: "live connection" }, "live"),
      h("span", { class: "spacer" }),
      h("span", { class: "who", "data-testid": "who" }, `${me.username} · ${me.role}`),
      h("button", { class: "ghost", "data-testid": "logout", on: { click: () => void logout() } }, "Log out"),
    ),
    h("nav", { class: "side", "aria-label": "Pages" }, navLinks),
    h("div", { class: "content" }, banner, main),
  );
  void refreshBanner();
  window.clearInterval(bannerTimer);
  bannerTimer = window.setInterval(() => void refreshBanner(), 10_000);
  if (!route) {
    document.title = "Not found · quantbox";
    mount(main, h("h1", null, "Not found"), h("p", null, `Nothing at ${path}.`));
    return;
  }
  document.title = `${route.title} · quantbox`;
  const params = (path.match(route.pattern)?.groups ?? {}) as Record<string, string>;
  const ctx: PageCtx = { live, params, go, refreshBanner: () => refreshBanner(true) };
  try {
    cleanup = await route.page(main, ctx);
  } catch (e) {
    toast(e instanceof Error ? e.message : String(e), "error");
  }
}

interface AccountView {
  name: string;
  halted: boolean;
  halted_reason: string | null;
}

let halted: AccountView[] = [];
let bannerAt = 0;

/** Shows a banner while any account is HALTED (kill switch pressed).
 *  Asks the server at most every 8 s unless `force` (after a kill or a
 *  resume): the trading API's rate limit is 5 r/s per client. */
async function refreshBanner(force = false): Promise<void> {
  const el = document.getElementById("halted-banner");
  if (!el || !me) return;
  try {
    if (force || performance.now() - bannerAt > 8000) {
      bannerAt = performance.now();
      halted = (await api<AccountView[]>("/api/v1/trading/accounts")).filter((a) => a.halted);
    }
    el.classList.toggle("hidden", halted.length === 0);
    mount(
      el,
      halted.map((a) =>
        h("div", { "data-testid": "halted" }, h("strong", null, "HALTED"), ` account ${a.name}: ${a.halted_reason ?? "kill switch"}. Only cancels pass until an admin resumes trading.`),
      ),
    );
  } catch {
    /* the banner is best effort */
  }
}

onSession((reason) => {
  if (reason === "expired") expiredNotice = true;
  if (reason !== "login") void render();
});
window.addEventListener("popstate", () => void render());

(async () => {
  mount(app, h("p", { class: "muted center" }, "Loading…"));
  await resume();
  await render();
})();
