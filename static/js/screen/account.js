// The account: wallet, holdings with live P&L, the portfolio summary and metrics, open orders
// with cancel, the activity and the equity chart. Read over REST once, then kept up to date by
// the private stream's events (and by live prices for the P&L); figures the server computes
// (day P&L, metrics, history) are read again when an event says they changed, never polled.
import { ApiError } from "../marketsrv.js";
import { EquityChart } from "./chart.js";
import {
  $, cents, debounce, el, fmtDateTime, fmtMoney, fmtPct, fmtQty, fmtSigned, kes, setSigned, setText,
} from "./util.js";

const OPEN = new Set(["pending", "partially_filled"]);

export class Account {
  /**
   * @param {import("../marketsrv.js").Client} api
   * @param {{price: (s: string) => number|null, changed: () => void}} context
   */
  constructor(api, context) {
    this.api = api;
    this.context = context;
    this.wallet = null;
    /** @type {Map<string, any>} holdings by symbol, with `serverPrice` and `dayPnl` of the last read */
    this.holdings = new Map();
    /** @type {Map<number, any>} open orders by id */
    this.orders = new Map();
    this.summary = null;
    this.period = "1M";
    this.equity = null;
    this.session = 0; // counts sign-ins and sign-outs: an answer for an older one is dropped
    this.events = 0; // counts events: a REST read that an event overtook is read again
    const quietly = (read) => debounce(() => { if (this.wallet) read().catch(() => {}); }, 400);
    this.refreshFigures = quietly(() => this.loadFigures());
    this.refreshActivity = quietly(() => this.loadActivity());
    $("cash-form").addEventListener("submit", (e) => this.moveCash(e));
    $("open-orders").addEventListener("click", (e) => {
      const id = e.target.closest("button[data-cancel]")?.dataset.cancel;
      if (id) this.cancel(Number(id), e.target);
    });
    for (const b of document.querySelectorAll("[data-period]")) {
      b.addEventListener("click", () => {
        this.period = b.dataset.period;
        for (const o of document.querySelectorAll("[data-period]")) o.setAttribute("aria-pressed", String(o === b));
        if (this.wallet) this.loadHistory().catch(() => {});
      });
    }
  }

  /** Everything, over REST (at sign-in, and when the stream says events were lost). */
  async load() {
    const session = this.session;
    let wallet, pending, partial;
    for (let tries = 0; tries < 3; tries += 1) {
      const events = this.events;
      [wallet, pending, partial] = await Promise.all([
        this.api.get("/api/trading/wallet/"),
        this.api.get("/api/trading/orders/list/?status=pending&page_size=100"),
        this.api.get("/api/trading/orders/list/?status=partially_filled&page_size=100"),
      ]);
      if (events === this.events) break; // no event came meanwhile: this read is current
    }
    if (session !== this.session) return;
    this.wallet = wallet;
    this.orders = new Map([...pending.results, ...partial.results].map((o) => [o.id, o]));
    await Promise.all([this.loadFigures(), this.loadActivity()]);
    this.drawWallet();
    this.drawOrders();
  }

  clear() {
    this.session += 1;
    this.equity?.clear();
    this.wallet = null;
    this.holdings.clear();
    this.orders.clear();
    this.summary = null;
    this.drawWallet();
    this.drawOrders();
    this.draw();
    $("activity").replaceChildren();
    $("metrics").replaceChildren();
  }

  async loadFigures() {
    const session = this.session;
    const [summary, metrics] = await Promise.all([
      this.api.get("/api/trading/portfolio/summary/"),
      this.api.get("/api/trading/portfolio/metrics/"),
    ]);
    if (session !== this.session) return;
    this.summary = summary.summary;
    this.holdings = new Map(summary.holdings.map((h) => [h.symbol, { ...h, serverPrice: h.current_price, dayPnl: h.day_pnl }]));
    this.drawMetrics(metrics);
    this.draw();
    if (!$("view-performance").hidden) await this.loadHistory();
  }

  async loadActivity() {
    const session = this.session;
    const page = await this.api.get("/api/trading/activities/?page_size=30");
    if (session !== this.session) return;
    $("activity").replaceChildren(...page.results.map((a) => el("li", {},
      el("time", { datetime: new Date(a.timestamp).toISOString() }, fmtDateTime(a.timestamp)),
      el("span", {}, a.description))));
  }

  async loadHistory() {
    const session = this.session;
    const history = await this.api.get(`/api/trading/portfolio/history/?period=${this.period}`);
    if (session !== this.session) return;
    this.equity ??= new EquityChart($("equity"));
    this.equity.show(history);
  }

  /** One event of the private stream. */
  event(frame) {
    this.events += 1;
    const d = frame.data;
    if (frame.type === "wallet") {
      this.wallet = { ...this.wallet, ...d };
      this.drawWallet();
    } else if (frame.type === "holding") {
      const h = this.holdings.get(d.symbol) || { symbol: d.symbol, name: d.symbol, current_price: null, serverPrice: null, dayPnl: 0 };
      if (d.quantity === 0) this.holdings.delete(d.symbol);
      else this.holdings.set(d.symbol, { ...h, ...d });
      this.refreshFigures(); // day P&L and metrics are the server's to compute
    } else if (frame.type.startsWith("order.")) {
      if (OPEN.has(d.status)) this.orders.set(d.id, d);
      else this.orders.delete(d.id);
      this.drawOrders();
    } else if (frame.type === "fill" || frame.type === "account.reset") {
      this.refreshFigures();
    }
    this.refreshActivity();
    this.draw();
    this.context.changed();
  }

  /** Available shares of a symbol (for the ticket). */
  shares(symbol) { return this.holdings.get(symbol)?.available_quantity ?? 0; }

  /** The user's resting prices in a symbol: {bids, asks}. */
  restingPrices(symbol) {
    const bids = [];
    const asks = [];
    for (const o of this.orders.values()) {
      if (o.symbol === symbol && o.price !== null) (o.side === "buy" ? bids : asks).push(o.price);
    }
    return { bids, asks };
  }

  drawWallet() {
    const w = this.wallet;
    setText($("wallet-balance"), w ? fmtMoney(w.balance) : "—");
    setText($("wallet-available"), w ? fmtMoney(w.available) : "—");
    setText($("wallet-held"), w ? fmtMoney(w.held) : "—");
  }

  /** Positions and the summary at live prices (sums in integer cents). */
  draw() {
    const rows = [];
    let valueC = 0, unrealizedC = 0, dayMoveC = 0;
    for (const h of [...this.holdings.values()].sort((a, b) => a.symbol.localeCompare(b.symbol))) {
      const price = this.context.price(h.symbol) ?? h.current_price;
      const value = price === null ? null : h.quantity * cents(price);
      const unrealized = value === null ? null : value - cents(h.cost_basis);
      // The server's day P&L at its price, moved by the quantity held since.
      const dayC = cents(h.dayPnl ?? 0) + (h.serverPrice !== null && price !== null ? h.quantity * (cents(price) - cents(h.serverPrice)) : 0);
      valueC += value ?? 0;
      unrealizedC += unrealized ?? 0;
      dayMoveC += dayC - cents(h.dayPnl ?? 0);
      const u = el("td", { class: "num" });
      setSigned(u, unrealized, unrealized === null ? "—" : fmtSigned(kes(unrealized)));
      const day = el("td", { class: "num" });
      setSigned(day, dayC, fmtSigned(kes(dayC)));
      rows.push(el("tr", {},
        el("td", {}, h.symbol), el("td", { class: "num" }, fmtQty(h.quantity)),
        el("td", { class: "num" }, fmtMoney(h.avg_price)), el("td", { class: "num" }, fmtMoney(price)),
        el("td", { class: "num" }, value === null ? "—" : fmtMoney(kes(value))), u, day));
    }
    $("positions").replaceChildren(...rows);
    const s = this.summary;
    const cashC = this.wallet ? cents(this.wallet.balance) : s ? cents(s.total_cash) : null;
    setText($("sum-total"), cashC === null ? "—" : fmtMoney(kes(cashC + valueC)));
    setText($("sum-holdings"), this.wallet || s ? fmtMoney(kes(valueC)) : "—");
    setSigned($("sum-unrealized"), unrealizedC, s ? fmtSigned(kes(unrealizedC)) : "—");
    const todayC = s ? cents(s.today_pnl) + dayMoveC : 0;
    setSigned($("sum-today"), todayC, s ? fmtSigned(kes(todayC)) : "—");
    setSigned($("sum-realized"), s?.total_realized_pnl ?? 0, s ? fmtSigned(s.total_realized_pnl) : "—");
  }

  drawOrders() {
    const open = [...this.orders.values()].sort((a, b) => b.id - a.id);
    setText($("open-count"), open.length ? String(open.length) : "");
    $("open-orders").replaceChildren(...open.map((o) => el("tr", { "data-order": o.id },
      el("td", {}, fmtDateTime(Date.parse(o.created_at))), el("td", {}, o.symbol),
      el("td", { class: o.side === "buy" ? "up" : "down" }, o.side),
      el("td", { class: "num" }, fmtMoney(o.price)),
      el("td", { class: "num" }, `${fmtQty(o.filled_quantity)} / ${fmtQty(o.quantity)}`),
      el("td", {}, o.status.replace("_", " ")),
      el("td", {}, el("button", { type: "button", "data-cancel": o.id, "aria-label": `Cancel order ${o.id}` }, "Cancel")))));
  }

  drawMetrics(m) {
    const t = m.trading_statistics;
    const p = m.performance;
    const items = [
      ["Trades", fmtQty(t.total_trades)], ["Win rate", fmtPct(t.win_rate)],
      ["Profit factor", t.profit_factor === null ? "—" : t.profit_factor.toFixed(2)],
      ["Average win", fmtMoney(t.average_win)], ["Average loss", fmtMoney(t.average_loss)],
      ["Max drawdown", fmtPct(t.max_drawdown_percent)],
      ["Return today", fmtPct(p.today.return_percent)], ["Return this week", fmtPct(p.week.return_percent)],
      ["Return this month", fmtPct(p.month.return_percent)],
    ];
    $("metrics").replaceChildren(...items.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { class: "num" }, v)]));
  }

  async cancel(id, button) {
    button.disabled = true;
    try {
      await this.api.delete(`/api/trading/orders/${id}/`);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      button.replaceWith(el("span", { class: "down small", role: "alert" }, error.message));
    }
  }

  async moveCash(e) {
    e.preventDefault();
    const action = e.submitter?.value || "deposit";
    const input = e.target.elements.amount;
    const error = $("err-amount");
    error.textContent = "";
    input.removeAttribute("aria-invalid");
    const path = action === "deposit" ? "/api/trading/wallet/" : "/api/trading/wallet/withdraw/";
    try {
      // Sent as typed: the server's words say what is wrong with it.
      this.wallet = await this.api.post(path, { amount: input.value.trim() });
      input.value = "";
      this.drawWallet();
      this.draw();
      this.context.changed();
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      error.textContent = err.message;
      input.setAttribute("aria-invalid", "true");
    }
  }
}
