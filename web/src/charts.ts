// Charts: TradingView's lightweight-charts, themed for the dark UI.
import {
  AreaSeries,
  CandlestickSeries,
  ColorType,
  HistogramSeries,
  LineSeries,
  createChart,
  type IChartApi,
  type ISeriesApi,
  type UTCTimestamp,
} from "lightweight-charts";
import { toMs } from "./format";

const GREEN = "#22c55e";
const RED = "#ef4444";

function base(el: HTMLElement): IChartApi {
  return createChart(el, {
    autoSize: true,
    layout: {
      background: { type: ColorType.Solid, color: "transparent" },
      textColor: "#94a3b8",
      fontFamily: "system-ui, sans-serif",
      attributionLogo: false,
    },
    grid: { vertLines: { color: "#1e293b" }, horzLines: { color: "#1e293b" } },
    rightPriceScale: { borderColor: "#334155" },
    timeScale: { borderColor: "#334155", timeVisible: true, secondsVisible: true },
    crosshair: { mode: 0 },
  });
}

/** Seconds for the chart (ns / ms / s in). */
export function sec(t: number): UTCTimestamp {
  return Math.floor(toMs(t) / 1000) as UTCTimestamp;
}

export interface Candle {
  time: UTCTimestamp;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
}

/** Points sorted by time with one per time (the last wins), as the library requires. */
export function uniq<T extends { time: UTCTimestamp }>(points: T[]): T[] {
  const by = new Map<number, T>();
  for (const p of points) by.set(p.time, p);
  return [...by.values()].sort((a, b) => a.time - b.time);
}

export class CandleChart {
  chart: IChartApi;
  private candles: ISeriesApi<"Candlestick">;
  private volume: ISeriesApi<"Histogram">;
  private last = 0;

  constructor(el: HTMLElement) {
    this.chart = base(el);
    this.candles = this.chart.addSeries(CandlestickSeries, {
      upColor: GREEN,
      downColor: RED,
      borderVisible: false,
      wickUpColor: GREEN,
      wickDownColor: RED,
    });
    this.volume = this.chart.addSeries(HistogramSeries, {
      priceFormat: { type: "volume" },
      priceScaleId: "volume",
      color: "#334155",
    });
    this.chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  }

  set(bars: Candle[]): void {
    const b = uniq(bars);
    this.candles.setData(b.map(({ time, open, high, low, close }) => ({ time, open, high, low, close })));
    this.volume.setData(b.map((x) => ({ time: x.time, value: x.volume, color: x.close >= x.open ? "#14532d" : "#7f1d1d" })));
    this.last = b.length ? b[b.length - 1].time : 0;
    this.chart.timeScale().fitContent();
  }

  /** A live bar: updates the last one or appends (older bars are ignored). */
  update(bar: Candle): void {
    if (bar.time < this.last) return;
    this.last = bar.time;
    this.candles.update({ time: bar.time, open: bar.open, high: bar.high, low: bar.low, close: bar.close });
    this.volume.update({ time: bar.time, value: bar.volume, color: bar.close >= bar.open ? "#14532d" : "#7f1d1d" });
  }

  remove(): void {
    this.chart.remove();
  }
}

/** An equity line with its drawdown below. */
export function equityCharts(
  equityEl: HTMLElement,
  drawdownEl: HTMLElement,
  points: { time: UTCTimestamp; value: number }[],
): () => void {
  const pts = uniq(points);
  const eq = base(equityEl);
  eq.addSeries(LineSeries, { color: "#38bdf8", lineWidth: 2 }).setData(pts);
  eq.timeScale().fitContent();
  let peak = -Infinity;
  const dd = pts.map((p) => {
    peak = Math.max(peak, p.value);
    return { time: p.time, value: peak > 0 ? (p.value / peak - 1) * 100 : 0 };
  });
  const ddc = base(drawdownEl);
  ddc
    .addSeries(AreaSeries, {
      lineColor: RED,
      topColor: "rgba(239,68,68,0.05)",
      bottomColor: "rgba(239,68,68,0.4)",
      priceFormat: { type: "custom", formatter: (v: number) => `${v.toFixed(2)}%` },
    })
    .setData(dd);
  ddc.timeScale().fitContent();
  return () => {
    eq.remove();
    ddc.remove();
  };
}

/** A live line (account equity over the session). */
export class LiveLine {
  chart: IChartApi;
  private series: ISeriesApi<"Line">;
  private last = 0;
  constructor(el: HTMLElement, color = "#38bdf8") {
    this.chart = base(el);
    this.series = this.chart.addSeries(LineSeries, { color, lineWidth: 2 });
  }
  push(t: UTCTimestamp, value: number): void {
    if (t < this.last) return;
    this.last = t;
    this.series.update({ time: t, value });
  }
  remove(): void {
    this.chart.remove();
  }
}
