// One WebSocket to /ws per page view, authenticated with the session's
// access token; channels are (re)subscribed on every (re)connection.
import { accessToken, onRenewed } from "./api";

export type Handler = (data: any, topic: string) => void;

export class Live {
  private ws: WebSocket | null = null;
  private handlers = new Map<string, Set<Handler>>();
  private closed = false;
  private retry = 500;
  private timer: number | undefined;
  /** Called with true/false as the connection comes and goes. */
  onState: (up: boolean) => void = () => undefined;

  constructor() {
    this.connect();
    // The server checks the session every few seconds and closes the
    // socket when the token it was given expires: hand it each new one.
    onRenewed((token) => {
      if (this.ws?.readyState === WebSocket.OPEN && this.authed) {
        this.ws.send(JSON.stringify({ auth: token }));
      }
    });
  }

  /** Listens on a channel; returns the function that stops listening. */
  on(channel: string, fn: Handler): () => void {
    let set = this.handlers.get(channel);
    if (!set) {
      set = new Set();
      this.handlers.set(channel, set);
      this.send({ subscribe: [channel] });
    }
    set.add(fn);
    return () => {
      const s = this.handlers.get(channel);
      if (!s) return;
      s.delete(fn);
      if (s.size === 0) {
        this.handlers.delete(channel);
        this.send({ unsubscribe: [channel] });
      }
    };
  }

  close(): void {
    this.closed = true;
    window.clearTimeout(this.timer);
    this.ws?.close(1000);
  }

  private send(msg: unknown) {
    if (this.ws?.readyState === WebSocket.OPEN && this.authed) this.ws.send(JSON.stringify(msg));
  }

  private authed = false;

  /** Whether the connection is up and authenticated. */
  get up(): boolean {
    return this.authed;
  }

  private connect() {
    const token = accessToken();
    if (this.closed || !token) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws`);
    this.ws = ws;
    this.authed = false;
    ws.onopen = () => ws.send(JSON.stringify({ auth: token }));
    ws.onmessage = (ev) => {
      let msg: { topic: string; data: any };
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg.topic === "authenticated") {
        this.authed = true;
        this.retry = 500;
        this.onState(true);
        const channels = [...this.handlers.keys()];
        if (channels.length) ws.send(JSON.stringify({ subscribe: channels }));
        return;
      }
      const set = this.handlers.get(msg.topic);
      if (set) for (const fn of set) fn(msg.data, msg.topic);
    };
    ws.onclose = () => {
      this.authed = false;
      this.onState(false);
      if (this.closed) return;
      // Reconnect with backoff (a slow-consumer cut-off included).
      this.timer = window.setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 10_000);
    };
  }
}
