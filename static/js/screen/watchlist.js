// The watchlist: every symbol's price, change and change percent, flashing as it moves, with
// each symbol's state (a halted one is marked). For the keyboard the list is one tab stop: the
// arrow keys move between rows, Enter or Space selects.
import { $, el, fmtMoney, fmtPct, fmtSigned, setSigned, setText } from "./util.js";

export class Watchlist {
  /** @param {(symbol: string) => void} onSelect */
  constructor(onSelect) {
    this.onSelect = onSelect;
    this.body = $("watchlist");
    /** @type {Map<string, {row: HTMLTableRowElement, price: HTMLElement, change: HTMLElement, pct: HTMLElement, last: number|null}>} */
    this.rows = new Map();
    this.selected = null;
    /** @type {Map<HTMLElement, number>} highlighted rows, until when */
    this.flashing = new Map();
    this.fade = 0;
    $("watch-filter").addEventListener("input", (e) => this.filter(e.target.value));
    this.body.addEventListener("keydown", (e) => this.key(e));
  }

  /** The rows, from GET /api/stocks/. */
  load(stocks) {
    this.body.replaceChildren();
    this.rows.clear();
    for (const s of stocks) {
      const price = el("td", { class: "num" });
      const change = el("td", { class: "num" });
      const pct = el("td", { class: "num" });
      const row = el("tr", {
        tabindex: "-1", role: "button", "data-symbol": s.symbol, "aria-current": "false",
        title: s.name, onclick: () => this.onSelect(s.symbol),
      }, el("td", {}, s.symbol), price, change, pct);
      this.body.append(row);
      this.rows.set(s.symbol, { row, price, change, pct, last: null });
      this.update({ symbol: s.symbol, price: s.current_price, change: s.change,
        changePercent: s.change_percent, state: s.state }, false);
    }
  }

  /** One market_data frame. */
  update(d, flash = true) {
    const r = this.rows.get(d.symbol);
    if (!r) return;
    if (flash && r.last !== null && d.price !== r.last) {
      // A highlight on, then off 700 ms later: two style changes a flash. (A fading animation
      // restyled every row at 60 frames a second: most of the page's main-thread time.)
      r.row.classList.toggle("flash-up", d.price > r.last);
      r.row.classList.toggle("flash-down", d.price < r.last);
      this.flashing.set(r.row, performance.now() + 700);
      this.fade ||= setInterval(() => this.unflash(), 200);
    }
    r.last = d.price;
    setText(r.price, fmtMoney(d.price));
    setSigned(r.change, d.change, fmtSigned(d.change));
    setSigned(r.pct, d.changePercent, fmtPct(d.changePercent));
    r.row.classList.toggle("halted", d.state === "halted");
    r.row.dataset.state = d.state || "";
  }

  unflash() {
    const now = performance.now();
    for (const [row, until] of this.flashing) {
      if (until > now) continue;
      row.classList.remove("flash-up", "flash-down");
      this.flashing.delete(row);
    }
    if (this.flashing.size === 0) {
      clearInterval(this.fade);
      this.fade = 0;
    }
  }

  /** The selected row is the list's one tab stop; the arrow keys move within it. */
  select(symbol) {
    for (const [s, r] of this.rows) {
      r.row.setAttribute("aria-current", String(s === symbol));
      r.row.tabIndex = s === symbol ? 0 : -1;
    }
    this.selected = symbol;
  }

  filter(text) {
    const wanted = text.trim().toUpperCase();
    for (const [s, r] of this.rows) r.row.hidden = wanted !== "" && !s.includes(wanted) && !(r.row.title || "").toUpperCase().includes(wanted);
    // The list's one tab stop must be a row that shows: the selected one, else the first.
    const rows = [...this.rows.values()].map((r) => r.row);
    const stop = rows.find((r) => !r.hidden && r.dataset.symbol === this.selected) || rows.find((r) => !r.hidden);
    for (const r of rows) r.tabIndex = r === stop ? 0 : -1;
  }

  key(e) {
    const row = e.target.closest("tr");
    if (!row) return;
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      this.onSelect(row.dataset.symbol);
    } else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      let next = e.key === "ArrowDown" ? row.nextElementSibling : row.previousElementSibling;
      while (next && next.hidden) next = e.key === "ArrowDown" ? next.nextElementSibling : next.previousElementSibling;
      if (next) {
        row.tabIndex = -1;
        next.tabIndex = 0;
        next.focus();
      }
    }
  }
}
