// Number, time and size formatting. Decimal amounts arrive as strings and
// are shown as sent (no float round trip); floats are figures.

export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function pct(x: number | null | undefined, digits = 2): string {
  return x === null || x === undefined || !Number.isFinite(x) ? "—" : `${(x * 100).toFixed(digits)}%`;
}

export function num(x: number | null | undefined, digits = 2): string {
  return x === null || x === undefined || !Number.isFinite(x) ? "—" : x.toLocaleString("en-US", { maximumFractionDigits: digits });
}

/** A decimal string with thousands separators, digits untouched. */
export function dec(s: string | null | undefined): string {
  if (s === null || s === undefined || s === "") return "—";
  const [int, frac] = s.split(".");
  const sign = int.startsWith("-") ? "-" : "";
  const digits = int.replace("-", "").replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${sign}${digits}${frac !== undefined ? "." + frac : ""}`;
}

/** Timestamps: ISO strings, or integer ns / ms since the epoch. */
export function time(t: string | number | null | undefined): string {
  if (t === null || t === undefined) return "—";
  const d = typeof t === "number" ? new Date(toMs(t)) : new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/Z$/, "");
}

/** ns, µs, ms or s since the epoch to ms (by magnitude). */
export function toMs(t: number): number {
  if (t > 1e17) return t / 1e6;
  if (t > 1e14) return t / 1e3;
  if (t > 1e11) return t;
  return t * 1000;
}

export function ago(t: string | null | undefined): string {
  if (!t) return "—";
  const s = Math.round((Date.now() - new Date(t).getTime()) / 1000);
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

export function duration(seconds: number): string {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${Math.floor(seconds % 60)}s`;
}

/** A signed decimal string's class for colouring. */
export function sign(s: string | number | null | undefined): string {
  const x = typeof s === "number" ? s : Number(s ?? 0);
  return x > 0 ? "pos" : x < 0 ? "neg" : "";
}

/** "a, b,,c" → ["a", "b", "c"] */
export function list(s: string): string[] {
  return s.split(",").map((x) => x.trim()).filter(Boolean);
}
