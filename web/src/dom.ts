// A few DOM helpers: the dashboard is plain TypeScript, no framework.
import { Problem } from "./api";

type Child = Node | string | number | null | undefined | false | Child[];
type Attrs = Record<string, unknown> & {
  class?: string;
  on?: Record<string, (ev: any) => void>;
};

/** Creates an element: h("button", {class: "primary", on: {click}}, "Save"). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs | null = null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "on") {
        for (const [ev, fn] of Object.entries(v as Record<string, (e: Event) => void>)) {
          el.addEventListener(ev, fn);
        }
      } else if (k === "dataset") {
        Object.assign(el.dataset, v);
      } else if (v === false || v === null || v === undefined) {
        continue;
      } else if (k in el && k !== "list" && typeof v !== "string") {
        (el as any)[k] = v;
      } else {
        el.setAttribute(k, v === true ? "" : String(v));
      }
    }
  }
  append(el, children);
  return el;
}

export function append(parent: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(parent, c);
    else parent.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function mount(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, children);
}

export interface Column<T> {
  title: string;
  value: (row: T) => Child;
  /** The value sorted by; columns without one are not sortable. */
  sort?: (row: T) => number | string;
  num?: boolean;
}

/** A table; sortable columns sort on click (and Enter). */
export function table<T>(
  columns: Column<T>[],
  rows: T[],
  opts: { empty?: string; testid?: string; initialSort?: number; desc?: boolean } = {},
): HTMLElement {
  let sortBy = opts.initialSort ?? -1;
  let desc = opts.desc ?? false;
  const wrap = h("div", { class: "table-wrap", "data-testid": opts.testid });
  const render = () => {
    const sorted = [...rows];
    const col = columns[sortBy];
    if (col?.sort) {
      const key = col.sort;
      sorted.sort((a, b) => {
        const x = key(a);
        const y = key(b);
        const c = x < y ? -1 : x > y ? 1 : 0;
        return desc ? -c : c;
      });
    }
    const head = columns.map((c, i) => {
      if (!c.sort) return h("th", { class: c.num ? "num" : "" }, c.title);
      const mark = i === sortBy ? (desc ? " ▼" : " ▲") : "";
      return h(
        "th",
        {
          class: `sortable ${c.num ? "num" : ""}`,
          tabindex: 0,
          "aria-sort": i === sortBy ? (desc ? "descending" : "ascending") : "none",
          on: {
            click: () => toggle(i),
            keydown: (e: KeyboardEvent) => {
              if (e.key === "Enter" || e.key === " ") {
                e.preventDefault();
                toggle(i);
              }
            },
          },
        },
        c.title + mark,
      );
    });
    const body =
      sorted.length === 0
        ? [h("tr", null, h("td", { colspan: columns.length, class: "muted" }, opts.empty ?? "Nothing yet."))]
        : sorted.map((r) => h("tr", null, columns.map((c) => h("td", { class: c.num ? "num" : "" }, c.value(r)))));
    mount(wrap, h("table", null, h("thead", null, h("tr", null, head)), h("tbody", null, body)));
  };
  const toggle = (i: number) => {
    desc = sortBy === i ? !desc : false;
    sortBy = i;
    render();
  };
  render();
  return wrap;
}

/** A labelled form field. */
export function field(label: string, input: HTMLElement, hint?: string): HTMLElement {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("small", { class: "muted" }, hint) : null);
}

export function card(title: string | null, ...children: Child[]): HTMLElement {
  return h("section", { class: "card" }, title ? h("h2", null, title) : null, ...children);
}

let toastHost: HTMLElement | null = null;

/** A short message in the corner; errors stay until dismissed. */
export function toast(message: string, kind: "ok" | "error" | "info" = "info"): void {
  if (!toastHost) {
    toastHost = h("div", { class: "toasts", role: "status", "aria-live": "polite" });
    document.body.appendChild(toastHost);
  }
  const close = h("button", { class: "ghost small", "aria-label": "Dismiss", on: { click: () => t.remove() } }, "×");
  const t = h("div", { class: `toast ${kind}` }, h("span", null, message), close);
  toastHost.appendChild(t);
  if (kind !== "error") setTimeout(() => t.remove(), 4000);
}

/** A modal asking for confirmation; resolves true on confirm. */
export function confirmDialog(title: string, body: string, confirmLabel: string): Promise<boolean> {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "confirm", "aria-labelledby": "confirm-title" });
    const done = (v: boolean) => {
      dialog.close();
      dialog.remove();
      resolve(v);
    };
    const ok = h("button", { class: "danger", "data-testid": "confirm-yes", on: { click: () => done(true) } }, confirmLabel);
    mount(
      dialog,
      h("h2", { id: "confirm-title" }, title),
      h("p", null, body),
      h(
        "div",
        { class: "row end" },
        h("button", { class: "ghost", on: { click: () => done(false) } }, "Cancel"),
        ok,
      ),
    );
    dialog.addEventListener("cancel", () => done(false));
    document.body.appendChild(dialog);
    dialog.showModal();
    ok.focus();
  });
}

export function badge(text: string, kind = ""): HTMLElement {
  return h("span", { class: `badge ${kind || text}` }, text);
}

export function progress(fraction: number | null | undefined): HTMLElement {
  const pct = Math.round(Math.max(0, Math.min(1, fraction ?? 0)) * 100);
  return h(
    "div",
    { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct },
    h("div", { class: "bar", style: `width:${pct}%` }),
    h("span", null, `${pct}%`),
  );
}

/** What went wrong, as the API stated it. */
export function describe(e: unknown): string {
  return e instanceof Problem ? e.describe() : String(e);
}

export function showError(e: unknown): void {
  toast(describe(e), "error");
}

/** A form whose submit runs `action` with its submit buttons disabled;
 *  a failure is shown as a toast unless `action` handles it. */
export function form(attrs: Attrs | null, action: () => Promise<void>, ...children: Child[]): HTMLFormElement {
  const el = h("form", attrs, ...children);
  el.addEventListener("submit", async (e) => {
    e.preventDefault();
    const buttons = [...el.querySelectorAll<HTMLButtonElement>('button[type="submit"]')];
    buttons.forEach((b) => (b.disabled = true));
    try {
      await action();
    } catch (x) {
      showError(x);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  });
  return el;
}

/** Newer / older buttons for a paged list. */
export function pager(el: HTMLElement, page: number, total: number, pageSize: number, noun: string, go: (page: number) => void): void {
  const pages = Math.max(1, Math.ceil(total / pageSize));
  mount(
    el,
    h("button", { class: "ghost", disabled: page <= 1, on: { click: () => go(page - 1) } }, "‹ Newer"),
    h("span", { class: "muted" }, `page ${page} of ${pages} · ${total} ${noun}`),
    h("button", { class: "ghost", disabled: page >= pages, on: { click: () => go(page + 1) } }, "Older ›"),
  );
}

/** A button that turns into a one-field form in place (Enter saves,
 *  Escape cancels); `save` failing keeps the field open with the error. */
export function inlineEdit(label: string, opts: { value?: string; type?: string; placeholder?: string }, save: (value: string) => Promise<void>): HTMLElement {
  const host = h("span", { class: "inline-edit" });
  const closed = () => mount(host, h("button", { class: "ghost small", on: { click: open } }, label));
  function open() {
    const input = h("input", { type: opts.type ?? "text", value: opts.value ?? "", placeholder: opts.placeholder ?? "", "aria-label": label, class: "small" });
    const f = form({ class: "row actions" }, async () => {
      await save(input.value);
      closed();
    }, input, h("button", { type: "submit", class: "primary small" }, "Save"), h("button", { type: "button", class: "ghost small", on: { click: closed } }, "Cancel"));
    input.addEventListener("keydown", (e) => e.key === "Escape" && closed());
    mount(host, f);
    input.focus();
  }
  closed();
  return host;
}
