// Strategy plugins: drag-and-drop upload, the registry, parameters.
import { api, canTrade, Problem } from "../api";
import { card, confirmDialog, h, mount, showError, table, toast } from "../dom";
import { bytes, time } from "../format";
import type { Page } from "../page";

export interface PluginParam {
  name: string;
  type: "integer" | "float" | "boolean";
  default: number;
  min?: number;
  max?: number;
  description: string;
}

export interface Plugin {
  id: string;
  name: string;
  version: string;
  description: string;
  interface: string;
  params: PluginParam[];
  symbols: number;
  intervals: string[];
  size_bytes: number;
  uploaded_by: string | null;
  uploaded_at: string;
}

export async function allPlugins(): Promise<Plugin[]> {
  const all: Plugin[] = [];
  for (let page = 1; ; page++) {
    const res = await api<{ items: Plugin[]; total: number }>(`/api/v1/plugins?page=${page}&page_size=100`);
    all.push(...res.items);
    if (res.items.length === 0 || all.length >= res.total) return all;
  }
}

function paramList(ps: PluginParam[]): HTMLElement {
  return h(
    "ul",
    { class: "params" },
    ps.map((p) =>
      h("li", null, h("code", null, p.name), ` ${p.type} = ${p.default}`, p.min !== undefined || p.max !== undefined ? ` [${p.min ?? "…"}, ${p.max ?? "…"}]` : "", p.description ? h("span", { class: "muted" }, ` — ${p.description}`) : null),
    ),
  );
}

export const pluginsPage: Page = async (root) => {
  const list = h("div");
  const result = h("div", { "data-testid": "upload-result", "aria-live": "polite" });

  const load = async () => {
    const plugins = await allPlugins();
    mount(
      list,
      table(
        [
          { title: "Name", value: (p: Plugin) => h("strong", null, p.name), sort: (p) => p.name },
          { title: "Version", value: (p: Plugin) => p.version, sort: (p) => p.version },
          { title: "sha256", value: (p: Plugin) => h("code", { title: p.id }, p.id.slice(0, 12)) },
          { title: "Parameters", value: (p: Plugin) => paramList(p.params) },
          { title: "Symbols", value: (p: Plugin) => p.symbols, num: true },
          { title: "Size", value: (p: Plugin) => bytes(p.size_bytes), sort: (p) => p.size_bytes, num: true },
          { title: "Uploaded", value: (p: Plugin) => `${time(p.uploaded_at)} by ${p.uploaded_by ?? "?"}`, sort: (p) => p.uploaded_at },
          {
            title: "",
            value: (p: Plugin) =>
              canTrade()
                ? h("button", { class: "ghost small", "aria-label": `Delete ${p.name}@${p.version}`, on: { click: () => void remove(p) } }, "Delete")
                : null,
          },
        ],
        plugins,
        { empty: "No plugins yet: drop a .wasm component above.", testid: "plugins" },
      ),
    );
  };

  const remove = async (p: Plugin) => {
    if (!(await confirmDialog("Delete plugin", `Delete ${p.name}@${p.version}? Backtests keep their results.`, "Delete"))) return;
    try {
      await api(`/api/v1/plugins/${p.id}`, { method: "DELETE" });
      toast(`Deleted ${p.name}@${p.version}`, "ok");
      await load();
    } catch (e) {
      showError(e);
    }
  };

  const upload = async (f: File) => {
    mount(result, h("p", { class: "muted" }, `Uploading and compiling ${f.name}…`));
    try {
      const p = await api<Plugin>("/api/v1/plugins", { method: "POST", raw: await f.arrayBuffer(), contentType: "application/wasm" });
      mount(result, h("p", { class: "ok" }, `Registered ${p.name}@${p.version} (${p.id.slice(0, 12)}).`));
      await load();
    } catch (e) {
      if (e instanceof Problem) {
        mount(
          result,
          h(
            "div",
            { class: "problem", role: "alert" },
            h("strong", null, `${e.title} (${e.status})`),
            h("p", null, e.detail),
            e.errors.length ? h("ul", null, e.errors.map((x) => h("li", null, h("code", null, x.field), `: ${x.message}`))) : null,
          ),
        );
      } else mount(result, h("div", { class: "problem" }, String(e)));
    }
  };

  const input = h("input", { type: "file", accept: ".wasm,application/wasm", "data-testid": "plugin-file" });
  input.addEventListener("change", () => input.files?.[0] && void upload(input.files[0]));
  const drop = h(
    "div",
    { class: "dropzone", tabindex: 0, "data-testid": "plugin-drop", role: "button", "aria-label": "Upload a plugin" },
    h("strong", null, "Drop a strategy component (.wasm) here"),
    h("span", { class: "muted" }, " or "),
    input,
  );
  drop.addEventListener("dragover", (e) => (e.preventDefault(), drop.classList.add("over")));
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const f = e.dataTransfer?.files[0];
    if (f) void upload(f);
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") input.click();
  });

  mount(root, h("h1", null, "Plugins"), canTrade() ? card("Upload", drop, result) : null, card("Registry", list));
  await load();
};
