// The order book ladder (bids and asks side by side, depth bars, the spread; the user's own
// resting prices in bold) and the recent trades tape of the selected symbol.
import { $, el, fmtMoney, fmtQty, fmtTime, perFrame, setText } from "./util.js";

const TAPE_ROWS = 60;

export class BookView {
  constructor() {
    this.body = $("book");
    this.spread = $("book-spread");
    /** @type {{bids: Set<number>, asks: Set<number>}} the user's resting prices here */
    this.mine = { bids: new Set(), asks: new Set() };
    this.rows = [];
    this.render = perFrame((book) => this.draw(book));
    this.book = null;
  }

  /** Empty, for `symbol` (a book of another symbol, even one queued to draw, is dropped). */
  clear(symbol = null) {
    this.symbol = symbol;
    this.book = null;
    this.body.replaceChildren();
    this.rows = [];
    setText(this.spread, "—");
  }

  /** @param {import("../streams.js").Book} book */
  show(book) {
    if (book.symbol !== this.symbol) return;
    this.book = book;
    this.render(book);
  }

  /** Prices at which the user has open orders in this symbol. */
  setMine(bids, asks) {
    this.mine = { bids: new Set(bids), asks: new Set(asks) };
    if (this.book) this.render(this.book);
  }

  row() {
    const cell = (cls) => {
      const bar = el("span", { class: `depth ${cls}`, "aria-hidden": "true" });
      const value = el("span", { class: "v" });
      return { td: el("td", { class: "num" }, bar, value), bar, value };
    };
    const r = { bq: cell("b"), bp: cell("x"), ap: cell("x"), aq: cell("a") };
    r.bp.td.classList.add("bid");
    r.ap.td.classList.add("ask");
    r.tr = el("tr", {}, r.bq.td, r.bp.td, r.ap.td, r.aq.td);
    return r;
  }

  draw(book) {
    if (book !== this.book) return; // cleared (or replaced) since it was queued
    const n = Math.max(book.bids.length, book.asks.length);
    while (this.rows.length < n) {
      const r = this.row();
      this.rows.push(r);
      this.body.append(r.tr);
    }
    while (this.rows.length > n) this.rows.pop().tr.remove();
    const top = Math.max(1, ...book.bids.map((l) => l.quantity), ...book.asks.map((l) => l.quantity));
    this.rows.forEach((r, i) => {
      const b = book.bids[i];
      const a = book.asks[i];
      setText(r.bq.value, b ? fmtQty(b.quantity) : "");
      setText(r.bp.value, b ? fmtMoney(b.price) : "");
      setText(r.ap.value, a ? fmtMoney(a.price) : "");
      setText(r.aq.value, a ? fmtQty(a.quantity) : "");
      r.bq.bar.style.width = b ? `${(100 * b.quantity) / top}%` : "0";
      r.aq.bar.style.width = a ? `${(100 * a.quantity) / top}%` : "0";
      r.bp.td.classList.toggle("mine", !!b && this.mine.bids.has(b.price));
      r.ap.td.classList.toggle("mine", !!a && this.mine.asks.has(a.price));
    });
    const bid = book.bids[0]?.price;
    const ask = book.asks[0]?.price;
    if (bid !== undefined && ask !== undefined) {
      const mid = (bid + ask) / 2;
      setText(this.spread, `Spread ${fmtMoney(ask - bid)} (${((10000 * (ask - bid)) / mid).toFixed(1)} bps) · seq ${book.seq}`);
    } else {
      setText(this.spread, `One side is empty · seq ${book.seq}`);
    }
  }
}

export class Tape {
  constructor() {
    this.body = $("tape");
    this.ids = new Set();
    /** @type {any[]} the trades shown, oldest first */
    this.shown = [];
  }

  clear() {
    this.body.replaceChildren();
    this.ids.clear();
    this.shown = [];
  }

  /** The newest trades first, from GET .../trades/, with the ones the stream brought meanwhile
 * (the tape is cleared when the symbol changes). */
  load(trades) {
    const all = new Map([...trades, ...this.shown].map((t) => [t.id, t]));
    this.body.replaceChildren();
    this.ids.clear();
    this.shown = [];
    for (const t of [...all.values()].sort((a, b) => a.id - b.id).slice(-TAPE_ROWS)) this.add(t);
  }

  /** One trade (from the stream, or from a reload after a reconnect: each id is shown once). */
  add(t) {
    if (this.ids.has(t.id)) return;
    this.ids.add(t.id);
    const row = el("tr", {},
      el("td", {}, fmtTime(t.timestamp)),
      el("td", { class: `num ${t.side}` }, fmtMoney(t.price)),
      el("td", { class: "num" }, fmtQty(t.quantity)));
    this.body.prepend(row);
    this.shown.push(t);
    if (this.shown.length > TAPE_ROWS) this.shown.shift();
    while (this.body.rows.length > TAPE_ROWS) this.body.lastElementChild.remove();
    if (this.ids.size > TAPE_ROWS * 4) this.ids = new Set([...this.ids].slice(-TAPE_ROWS * 2));
  }
}
