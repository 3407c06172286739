// Browser test of the dashboard against a running quantbox server, in
// headless Debian Chromium driven by playwright-core. Started by the Rust
// integration test `dashboard::the_dashboard_works_in_a_browser`, which
// starts the real server and passes:
//   QB_BASE         http://127.0.0.1:PORT
//   QB_PASSWORD     the admin password
//   QB_PLUGIN       path of the SMA crossover component (.wasm)
//   QB_SCREENSHOTS  where to save a screenshot of every page
//   CHROMIUM        the browser (default /usr/bin/chromium)
// Exits non-zero with the step that failed.
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BASE = process.env.QB_BASE ?? "http://127.0.0.1:8000";
const PASSWORD = process.env.QB_PASSWORD ?? "";
const PLUGIN = process.env.QB_PLUGIN ?? "";
const SHOTS = process.env.QB_SCREENSHOTS ?? new URL("./screenshots", import.meta.url).pathname;
const SYMBOL = "IF2409";
const T0 = Date.UTC(2024, 0, 2, 1, 0, 0); // ms
mkdirSync(SHOTS, { recursive: true });

let step = "start";
const log = (msg) => console.log(`[dashboard] ${msg}`);
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

/** 600 ticks, one a second, three slow sine cycles, with bid/ask. */
function ticksCsv() {
  const rows = ["symbol,ts,price,size,bid,ask"];
  for (let i = 0; i < 600; i++) {
    const p = Math.round(3500 + 20 * Math.sin((i * 6 * Math.PI) / 600));
    rows.push(`${SYMBOL},${new Date(T0 + i * 1000).toISOString()},${p},1,${p - 0.2},${p + 0.2}`);
  }
  return rows.join("\n") + "\n";
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
const page = await context.newPage();
page.setDefaultTimeout(30_000);

// Console errors fail the run, except those a step expects (an API refusal
// the page shows is logged by Chromium as a failed resource load).
const consoleErrors = [];
let expectFailures = false;
page.on("console", (m) => {
  if (m.type() !== "error") return;
  if (expectFailures && m.text().startsWith("Failed to load resource")) return;
  consoleErrors.push(`${step}: ${m.text()}`);
});
page.on("pageerror", (e) => consoleErrors.push(`${step}: ${e.message}`));
// Refused API calls, for the report when something fails.
const refused = [];
page.on("response", (r) => {
  if (r.status() >= 400) refused.push(`${step}: ${r.status()} ${r.request().method()} ${r.url()}`);
});
// Nothing may be fetched from anywhere but the server.
const foreign = [];
page.on("request", (r) => {
  const u = r.url();
  if (!u.startsWith(BASE) && !u.startsWith("ws://" + new URL(BASE).host) && !u.startsWith("data:") && !u.startsWith("blob:")) foreign.push(u);
});

async function shot(name) {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

async function nav(label) {
  await page.getByRole("link", { name: label, exact: true }).click();
}

let token = null;
async function apiPost(path, body) {
  const r = await fetch(BASE + path, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

try {
  step = "login";
  await page.goto(BASE + "/");
  await page.getByLabel("Username").fill("admin");
  expectFailures = true;
  await page.getByLabel("Password").fill("wrong-password-123");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("login-error").filter({ hasText: /./ }).waitFor();
  expectFailures = false;
  await shot("login");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("who").filter({ hasText: "admin" }).waitFor();
  log("logged in");

  step = "overview";
  await page.getByTestId("cpu").waitFor();
  await page.getByTestId("queues").locator("tbody tr").first().waitFor();
  await shot("overview");

  step = "market import";
  await nav("Market");
  await page.getByTestId("import-file").setInputFiles({ name: "ticks.csv", mimeType: "text/csv", buffer: Buffer.from(ticksCsv()) });
  await page.getByTestId("import-submit").click();
  await page.getByTestId("import-result").waitFor({ timeout: 60_000 });
  await page.getByTestId(`symbol-${SYMBOL}`).click();
  await page.waitForFunction(() => Number(document.querySelector('[data-testid="candles"]')?.dataset.bars ?? 0) > 0);
  log("imported; chart has bars");

  step = "market live";
  // A token for the API calls the test makes itself (live ticks).
  const login = await fetch(BASE + "/api/v1/auth/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "admin", password: PASSWORD }),
  });
  token = (await login.json()).access_token;
  // Let the bars channel subscription settle, then ingest a later tick.
  await page.waitForTimeout(500);
  await apiPost("/api/v1/market/ticks", [{ symbol: SYMBOL, ts: new Date(T0 + 600_000).toISOString(), price: 3510, size: 3, bid: 3509.8, ask: 3510.2 }]);
  await page.waitForFunction(() => Number(document.querySelector('[data-testid="candles"]')?.dataset.liveUpdates ?? 0) > 0);
  log("live bar arrived over /ws");
  await shot("market");

  step = "plugins";
  await nav("Plugins");
  // A file that is not a component: the API's problem is shown as stated.
  expectFailures = true;
  await page.getByTestId("plugin-file").setInputFiles({ name: "bogus.wasm", mimeType: "application/wasm", buffer: Buffer.from("not a wasm module") });
  await page.getByTestId("upload-result").locator(".problem").waitFor();
  const problemText = await page.getByTestId("upload-result").innerText();
  assert(/wasm|WebAssembly|magic|module/i.test(problemText), `upload problem: ${problemText}`);
  expectFailures = false;
  // The real plugin, dropped on the drop zone.
  const bytes = readFileSync(PLUGIN).toString("base64");
  const dt = await page.evaluateHandle((b64) => {
    const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([data], "sma_crossover.wasm", { type: "application/wasm" }));
    return transfer;
  }, bytes);
  await page.getByTestId("plugin-drop").dispatchEvent("drop", { dataTransfer: dt });
  await page.getByTestId("upload-result").filter({ hasText: "Registered sma-crossover@" }).waitFor({ timeout: 60_000 });
  await page.getByTestId("plugins").getByText("sma-crossover").first().waitFor();
  log("plugin uploaded by drag and drop");
  await shot("plugins");

  step = "backtest";
  await nav("Backtests");
  await page.getByTestId("bt-plugin").waitFor();
  await page.getByLabel("Interval").selectOption("tick");
  await page.getByLabel("fast", { exact: true }).fill("5");
  await page.getByLabel("slow", { exact: true }).fill("20");
  await shot("backtests");
  await page.getByTestId("bt-run").click();
  await page.waitForURL(/\/backtests\/[^/]+$/);
  await page.getByTestId("metrics").waitFor({ timeout: 90_000 });
  const points = Number(await page.getByTestId("equity-chart").getAttribute("data-points"));
  assert(points > 1, `equity points: ${points}`);
  assert((await page.getByTestId("equity-chart").locator("canvas").count()) > 0, "equity chart has no canvas");
  const ret = await page.locator('[data-metric="total_return"] .value').innerText();
  assert(ret.endsWith("%"), `total return shown: ${ret}`);
  const fillRows = await page.getByTestId("fills").locator("tbody tr").count();
  assert(fillRows > 0, "backtest fills table is empty");
  log(`backtest done: ${points} equity points, return ${ret}, ${fillRows} fills`);
  await shot("backtest-result");
  // The HTML report downloads with the session's token.
  const [report] = await Promise.all([page.waitForEvent("download"), page.getByTestId("download-report.html").click()]);
  assert(/^backtest-.*\.html$/.test(report.suggestedFilename()), `report file name: ${report.suggestedFilename()}`);
  const reportPath = await report.path();
  assert(readFileSync(reportPath, "utf8").includes("<svg"), "the report has its charts");

  step = "sweep";
  await nav("Backtests");
  await page.getByLabel("Interval").selectOption("tick");
  await page.getByLabel("Parameter sweep").check();
  await page.getByLabel("fast values").fill("3, 5");
  await page.getByLabel("slow values").fill("15, 20");
  await page.getByTestId("bt-run").click();
  await page.waitForURL(/\/sweeps\/[^/]+$/);
  await page.getByTestId("sweep-rows").locator("tbody tr").nth(3).waitFor({ timeout: 90_000 });
  await page.getByText("4 of 4 runs done").waitFor({ timeout: 90_000 });
  // Sorting by a column header reorders the rows.
  await page.getByTestId("sweep-rows").getByRole("columnheader", { name: /^fast/ }).click();
  const firstFast = await page.getByTestId("sweep-rows").locator("tbody tr").first().locator("td").first().innerText();
  assert(firstFast === "3", `sorted by fast ascending: first row ${firstFast}`);
  log("sweep of 4 runs done and sortable");
  await shot("sweep");

  step = "live strategy";
  await nav("Live");
  await page.getByTestId("account").waitFor();
  await page.getByText("Start a strategy").click();
  await page.getByTestId("strategy-symbols").fill(SYMBOL);
  await page.getByTestId("strategy-interval").selectOption("tick");
  const startForm = page.locator("form", { has: page.getByTestId("strategy-start") });
  await startForm.getByLabel("fast", { exact: true }).fill("5");
  await startForm.getByLabel("slow", { exact: true }).fill("20");
  await page.getByTestId("strategy-start").click();
  await page.getByTestId("strategies").getByText("running").waitFor();
  const before = Number((await page.getByTestId("live-fills").getAttribute("data-count")) ?? 0);
  await page.getByTestId("replay-symbols").fill(SYMBOL);
  await page.getByTestId("replay-speed").fill("0");
  await page.getByTestId("replay-start").click();
  await page.waitForFunction((n) => Number(document.querySelector('[data-testid="live-fills"]')?.dataset.count ?? 0) > n, before, { timeout: 60_000 });
  await page.getByTestId("fills").locator("tbody tr").first().waitFor();
  log("fills arrived live");
  await page.waitForTimeout(1500);
  await shot("live");

  step = "kill switch";
  await page.getByTestId("kill").click();
  await page.getByTestId("confirm-yes").click();
  await page.getByTestId("account-halted").waitFor();
  await page.getByTestId("halted").first().waitFor();
  await page.getByTestId("strategies").getByText("stopped").waitFor();
  log("kill switch: account HALTED, strategy stopped");
  await shot("live-halted");

  step = "a lost refresh answer";
  // The server rotates the refresh token but the page never gets the
  // answer (as when a reload kills the request): the page keeps its spent
  // token, tries again 5 s later, and the server's reuse grace answers.
  let dropped = false;
  await page.route("**/api/v1/auth/refresh", async (route) => {
    if (dropped) return route.continue();
    dropped = true;
    expectFailures = true;
    await route.fetch();
    await route.abort();
  });
  // The retry after the dropped answer (a renewal already in flight when
  // the route was installed does not count).
  await page.waitForResponse((r) => dropped && r.url().endsWith("/api/v1/auth/refresh") && r.ok(), { timeout: 30_000 });
  await page.unroute("**/api/v1/auth/refresh");
  expectFailures = false;
  log("a lost refresh answer did not end the session");

  step = "reload keeps the session";
  await page.reload();
  await page.getByTestId("who").filter({ hasText: "admin" }).waitFor();
  await page.getByTestId("account-halted").waitFor();
  await page.getByTestId("resume").click();
  await page.getByTestId("account-halted").waitFor({ state: "detached" });

  for (const [label, testid, name] of [
    ["Schedules", "schedules", "schedules"],
    ["Jobs", "jobs", "jobs"],
    ["Users & keys", "users", "users"],
    ["Audit log", "audit", "audit"],
  ]) {
    step = name;
    await nav(label);
    await page.getByTestId(testid).locator("tbody tr").first().waitFor();
    if (name === "schedules") {
      // Edit a schedule's cron in place.
      const row = page.getByTestId("schedules").locator("tbody tr", { hasText: "market-retention" });
      await row.getByRole("button", { name: "Edit cron" }).click();
      await row.getByLabel("Edit cron").fill("0 0 5 * * *");
      await row.getByRole("button", { name: "Save" }).click();
      await page.getByTestId("schedules").locator("tbody tr", { hasText: "market-retention" }).getByText("0 0 5 * * *").waitFor();
    }
    if (name === "users") {
      // Add a user, then give them a new password in place.
      await page.getByLabel("Username").fill("tina");
      await page.locator("form", { hasText: "Add user" }).getByLabel("Password").fill("tina-password-1234");
      await page.getByRole("button", { name: "Add user" }).click();
      const row = page.getByTestId("users").locator("tbody tr", { hasText: "tina" });
      await row.getByRole("button", { name: "Set password" }).click();
      await row.getByLabel("Set password").fill("tina-password-5678");
      await row.getByRole("button", { name: "Save" }).click();
      await page.getByText("New password set for tina").waitFor();
      const r = await fetch(BASE + "/api/v1/auth/login", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ username: "tina", password: "tina-password-5678" }),
      });
      assert(r.ok, `tina signs in with the new password: ${r.status}`);
    }
    await shot(name);
  }
  const audit = await page.getByTestId("audit").innerText();
  assert(audit.includes("POST /api/v1/trading/kill"), "the kill switch is in the audit log");

  step = "keyboard";
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter"); // the skip link
  const focused = await page.evaluate(() => document.activeElement?.id);
  assert(focused === "main", `the skip link moves focus to the content, not ${focused}`);

  step = "tablet width";
  await page.setViewportSize({ width: 820, height: 1180 });
  await page.getByRole("button", { name: "Menu" }).click();
  await nav("Overview");
  await page.getByTestId("cpu").waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert(overflow <= 0, `page wider than a tablet by ${overflow}px`);
  await shot("overview-tablet");

  step = "session expiry";
  // The server runs with 20 s access tokens, so the page has renewed its
  // token several times by now. Revoke its refresh token behind its back:
  // the next renewal fails and the login page says the session expired.
  expectFailures = true;
  const refresh = await page.evaluate(() => sessionStorage.getItem("quantbox.refresh"));
  assert(refresh, "a refresh token in sessionStorage");
  const admin = await (await fetch(BASE + "/api/v1/auth/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "admin", password: PASSWORD }),
  })).json();
  const revoked = await fetch(BASE + "/api/v1/auth/logout", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${admin.access_token}` },
    body: JSON.stringify({ refresh_token: refresh }),
  });
  assert(revoked.ok, `logout of the page's refresh token: ${revoked.status}`);
  await page.getByTestId("session-notice").waitFor({ timeout: 30_000 });
  expectFailures = false;
  await page.getByLabel("Username").fill("admin");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("cpu").waitFor();
  log("session expiry shown; signed in again");

  step = "traders see their accounts";
  // A trader with no account is told so; one granted the house account
  // trades it from the live page like an admin. (Desktop width again.)
  await page.setViewportSize({ width: 1440, height: 900 });
  token = (await (await fetch(BASE + "/api/v1/auth/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "admin", password: PASSWORD }),
  })).json()).access_token;
  for (const name of ["tess", "theo"]) await apiPost("/api/v1/users", { username: name, password: `${name}-password-123`, role: "trader" });
  const granted = await fetch(BASE + "/api/v1/trading/accounts/paper/grants/tess", { method: "PUT", headers: { authorization: `Bearer ${token}` } });
  assert(granted.ok, `grant: ${granted.status}`);
  const signInAs = async (name) => {
    await page.getByTestId("logout").click();
    await page.getByLabel("Username").fill(name);
    await page.getByLabel("Password").fill(`${name}-password-123`);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByTestId("who").filter({ hasText: name }).waitFor();
  };
  await signInAs("theo");
  await nav("Live");
  await page.getByTestId("no-account").waitFor();
  await signInAs("tess");
  await nav("Live");
  await page.getByTestId("account").waitFor();
  // The admin's strategy on it (stopped by the kill switch above).
  await page.getByTestId("strategies").getByText("stopped").waitFor();
  const options = await page.getByLabel("Account").locator("option").allInnerTexts();
  assert(options.join() === "paper", `tess's accounts: ${options.join()}`);
  log("a trader without an account is told so; a granted one sees the live page");

  step = "logout";
  await page.getByTestId("logout").click();
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  const stored = await page.evaluate(() => ({ session: sessionStorage.length, local: localStorage.length }));
  assert(stored.session === 0 && stored.local === 0, `tokens left after logout: ${JSON.stringify(stored)}`);

  step = "checks";
  assert(consoleErrors.length === 0, `console errors:\n${consoleErrors.join("\n")}`);
  assert(foreign.length === 0, `requests outside the server: ${foreign.join(", ")}`);
  log(`all steps passed; screenshots in ${SHOTS}`);
} catch (e) {
  await page.screenshot({ path: join(SHOTS, `failed-${step.replace(/\W+/g, "-")}.png`), fullPage: true }).catch(() => undefined);
  console.error(`[dashboard] FAILED at step "${step}": ${e.stack ?? e}`);
  if (consoleErrors.length) console.error(`console errors:\n${consoleErrors.join("\n")}`);
  if (refused.length) console.error(`refused requests:\n${refused.join("\n")}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
