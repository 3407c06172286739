// The API client and the session.
//
// Tokens: the access token (short-lived JWT) lives only in memory; the
// refresh token is kept in sessionStorage so a reload of the same tab keeps
// the session, and it is gone when the tab closes. Nothing goes to
// localStorage or cookies. The access token is renewed shortly before it
// expires and once more on a 401; if renewal fails the session is over and
// the login page says so. Logout revokes the refresh token on the server.

export interface FieldError {
  field: string;
  message: string;
}

/** An RFC 9457 problem as the server sent it. */
export class Problem extends Error {
  constructor(
    public status: number,
    public title: string,
    public detail: string,
    public errors: FieldError[] = [],
    public type = "",
    public rule?: string,
  ) {
    super(detail || title);
  }

  /** One line for a toast: the detail and every field error. */
  describe(): string {
    const fields = this.errors.map((e) => `${e.field}: ${e.message}`);
    return [this.detail || this.title, ...fields].join(" — ");
  }
}

export interface User {
  id: number;
  username: string;
  role: "viewer" | "trader" | "admin";
  disabled: boolean;
  created_at: string;
}

interface Tokens {
  access_token: string;
  refresh_token: string;
  expires_in: number;
}

const REFRESH_KEY = "quantbox.refresh";

let access: string | null = null;
let renewTimer: number | undefined;
let renewing: Promise<boolean> | null = null;
export let me: User | null = null;

type Listener = (reason: "login" | "logout" | "expired") => void;
const listeners: Listener[] = [];
export function onSession(l: Listener): void {
  listeners.push(l);
}
function emit(reason: "login" | "logout" | "expired") {
  for (const l of listeners) l(reason);
}

export function accessToken(): string | null {
  return access;
}

const renewals: ((token: string) => void)[] = [];
/** Calls `l` with every renewed access token (e.g. to re-authenticate /ws). */
export function onRenewed(l: (token: string) => void): void {
  renewals.push(l);
}

export function isAdmin(): boolean {
  return me?.role === "admin";
}

export function canTrade(): boolean {
  return me?.role === "admin" || me?.role === "trader";
}

function adopt(t: Tokens) {
  const renewed = access !== null;
  access = t.access_token;
  if (renewed) for (const l of renewals) l(t.access_token);
  sessionStorage.setItem(REFRESH_KEY, t.refresh_token);
  window.clearTimeout(renewTimer);
  // Renew a little before expiry (at least 5 s from now).
  const inMs = Math.max(5, t.expires_in - 30) * 1000;
  renewTimer = window.setTimeout(() => void renew(), inMs);
}

function drop() {
  access = null;
  me = null;
  window.clearTimeout(renewTimer);
  sessionStorage.removeItem(REFRESH_KEY);
}

async function problemOf(res: Response): Promise<Problem> {
  let body: any = null;
  try {
    body = await res.json();
  } catch {
    /* not JSON */
  }
  if (body && typeof body === "object") {
    return new Problem(res.status, body.title ?? res.statusText, body.detail ?? "", body.errors ?? [], body.type ?? "", body.rule);
  }
  return new Problem(res.status, res.statusText, `HTTP ${res.status}`);
}

export async function login(username: string, password: string): Promise<void> {
  const res = await fetch("/api/v1/auth/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  if (!res.ok) throw await problemOf(res);
  adopt(await res.json());
  me = await api<User>("/api/v1/auth/me");
  emit("login");
}

/** Renews the access token with the refresh token; false if the session is over.
 *  Concurrent callers share one request. */
function renew(): Promise<boolean> {
  // `.finally` runs after the assignment, even when the request is skipped.
  renewing ??= refreshTokens().finally(() => {
    renewing = null;
  });
  return renewing;
}

async function refreshTokens(): Promise<boolean> {
  const refresh = sessionStorage.getItem(REFRESH_KEY);
  if (!refresh) return false;
  let res: Response;
  try {
    res = await fetch("/api/v1/auth/refresh", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ refresh_token: refresh }),
    });
  } catch {
    // The server is unreachable: keep the session, try again shortly.
    window.clearTimeout(renewTimer);
    renewTimer = window.setTimeout(() => void renew(), 5000);
    return false;
  }
  if (!res.ok) {
    const wasIn = access !== null || me !== null;
    drop();
    if (wasIn) emit("expired");
    return false;
  }
  adopt(await res.json());
  return true;
}

/** Restores a session after a reload; true if there is one. */
export async function resume(): Promise<boolean> {
  if (!(await renew())) return false;
  try {
    me = await api<User>("/api/v1/auth/me");
    return true;
  } catch {
    drop();
    return false;
  }
}

export async function logout(): Promise<void> {
  const refresh = sessionStorage.getItem(REFRESH_KEY);
  if (access) {
    await fetch("/api/v1/auth/logout", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${access}` },
      body: JSON.stringify({ refresh_token: refresh }),
    }).catch(() => undefined);
  }
  drop();
  emit("logout");
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  /** Sent as is (FormData, Blob, ArrayBuffer) instead of JSON. */
  raw?: BodyInit;
  contentType?: string;
}

/** Calls the API with the session's token; throws `Problem` on errors. */
export async function api<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const res = await send(path, opts);
  if (res.status === 204) return undefined as T;
  const type = res.headers.get("content-type") ?? "";
  return (type.includes("json") ? await res.json() : await res.text()) as T;
}

/** The raw response (downloads); throws `Problem` on errors. */
export async function send(path: string, opts: RequestOptions = {}, retried = false): Promise<Response> {
  const headers: Record<string, string> = {};
  if (access) headers.authorization = `Bearer ${access}`;
  let body: BodyInit | undefined = opts.raw;
  if (opts.body !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(opts.body);
  } else if (opts.contentType) {
    headers["content-type"] = opts.contentType;
  }
  const res = await fetch(path, { method: opts.method ?? "GET", headers, body });
  if (res.status === 401 && !retried && (await renew())) return send(path, opts, true);
  if (res.status === 429 && !retried) {
    const wait = Number(res.headers.get("retry-after") ?? "1");
    await new Promise((r) => setTimeout(r, Math.min(5, wait) * 1000));
    return send(path, opts, true);
  }
  if (!res.ok) throw await problemOf(res);
  return res;
}

/** Downloads a protected file (the token is a header, so no plain link). */
export async function download(path: string, filename: string): Promise<void> {
  const res = await send(path);
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export interface Page<T> {
  items: T[];
  total: number;
  page: number;
  page_size: number;
}
