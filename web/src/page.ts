import type { Live } from "./ws";

/** What every page gets. */
export interface PageCtx {
  live: Live;
  /** Named groups of the route's pattern (`id`). */
  params: Record<string, string>;
  go: (path: string) => void;
  refreshBanner: () => Promise<void>;
}

/** Renders into `root`; returns what to do when the page is left. */
export type Page = (root: HTMLElement, ctx: PageCtx) => void | (() => void) | Promise<void | (() => void)>;
