// Charts through the vendored TradingView Lightweight Charts (static/vendor/README.md): the
// selected symbol's candles (history from the candles endpoint, then live from the stream's
// one-minute candles) and the account's equity.
import {
  CandlestickSeries, ColorType, LineSeries, createChart,
} from "/static/vendor/lightweight-charts-5.2.1.standalone.production.mjs";

const STEP_MS = { "1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000 };
const LIMIT = { "1m": 720, "5m": 600, "15m": 500, "1h": 500, "1d": 400 };

/** The chart's time axis shows the browser's local time: shift UTC seconds by its offset. */
const local = (ms) => Math.floor(ms / 1000) - new Date(ms).getTimezoneOffset() * 60;

/** Points with strictly growing times, as the chart requires (a shifted clock can repeat a
 * second, or go back at a daylight-saving change): a later point replaces an earlier one. */
function ascending(points) {
  const out = [];
  for (const p of points) {
    while (out.length && out.at(-1).time >= p.time) out.pop();
    out.push(p);
  }
  return out;
}

function themed() {
  const css = getComputedStyle(document.documentElement);
  const v = (name) => css.getPropertyValue(name).trim();
  return {
    layout: { background: { type: ColorType.Solid, color: v("--panel") }, textColor: v("--muted"), attributionLogo: true },
    grid: { vertLines: { color: v("--line") }, horzLines: { color: v("--line") } },
    rightPriceScale: { borderColor: v("--line") },
    timeScale: { borderColor: v("--line"), timeVisible: true, secondsVisible: false },
    colors: { up: v("--up"), down: v("--down"), accent: v("--accent") },
  };
}

function makeChart(container) {
  const theme = themed();
  const chart = createChart(container, { autoSize: true, ...theme });
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => chart.applyOptions(themed()));
  return chart;
}

export class CandleChart {
  /** @param {HTMLElement} container @param {import("../marketsrv.js").Client} api */
  constructor(container, api) {
    this.api = api;
    this.chart = makeChart(container);
    const { colors } = themed();
    this.series = this.chart.addSeries(CandlestickSeries, {
      upColor: colors.up, downColor: colors.down, wickUpColor: colors.up, wickDownColor: colors.down,
      borderVisible: false, priceFormat: { type: "price", precision: 2, minMove: 0.01 },
    });
    this.symbol = null;
    this.interval = "1m";
    /** @type {{start: number, open: number, high: number, low: number, close: number}|null} */
    this.last = null;
    this.loading = 0;
  }

  /** Load `symbol`'s history at `interval` (1m 5m 15m 1h 1d). */
  async show(symbol, interval = this.interval) {
    this.symbol = symbol;
    this.interval = interval;
    const ticket = ++this.loading;
    const answer = await this.api.get(
      `/api/stocks/${encodeURIComponent(symbol)}/candles/?interval=${interval}&limit=${LIMIT[interval]}`,
    );
    if (ticket !== this.loading) return; // another symbol or interval was asked for meanwhile
    const bars = answer.candles.map((c) => ({ time: local(c.time), open: c.open, high: c.high, low: c.low, close: c.close }));
    this.series.setData(ascending(bars));
    const c = answer.candles.at(-1);
    this.last = c ? { start: c.time, open: c.open, high: c.high, low: c.low, close: c.close } : null;
    this.chart.timeScale().scrollToRealTime();
  }

  /** A live one-minute candle of the shown symbol (the stream's `candle` frame); a promise
   * when it had to read the history again. */
  candle(c) {
    if (c.symbol !== this.symbol || this.loading === 0) return;
    const step = STEP_MS[this.interval];
    let start;
    if (step) start = Math.floor(c.time / step) * step;
    else if (this.last && c.time < this.last.start + 86_400_000) start = this.last.start; // 1d
    else return this.show(this.symbol, this.interval); // a new day: read its bar
    let bar = this.last;
    if (!bar || start > bar.start) {
      bar = { start, open: c.open, high: c.high, low: c.low, close: c.close };
    } else if (start === bar.start) {
      // Merge this minute into the bar: a minute's candle only grows, so max/min are exact.
      bar = { ...bar, high: Math.max(bar.high, c.high), low: Math.min(bar.low, c.low), close: c.close };
      if (step === 60_000) bar = { start, open: c.open, high: c.high, low: c.low, close: c.close };
    } else {
      return; // older than the last bar
    }
    this.last = bar;
    this.series.update({ time: local(bar.start), open: bar.open, high: bar.high, low: bar.low, close: bar.close });
  }
}

export class EquityChart {
  /** @param {HTMLElement} container */
  constructor(container) {
    this.chart = makeChart(container);
    this.series = this.chart.addSeries(LineSeries, {
      color: themed().colors.accent, lineWidth: 2, priceFormat: { type: "price", precision: 2, minMove: 0.01 },
    });
  }

  /** GET /api/trading/portfolio/history/ */
  clear() {
    this.series.setData([]);
  }

  show(history) {
    const points = history.timestamps.map((t, i) => ({ time: local(t), value: history.equity[i] }));
    this.series.setData(ascending(points));
    this.chart.timeScale().fitContent();
  }
}
