// The order ticket: buy or sell, market or limit, quantity, price, time in force; the tick size
// and the day's limits shown; the estimated cost or proceeds against the cash or shares
// available. The server checks everything: its refusal is shown by the field it concerns, in
// its own words.
import { ApiError } from "../marketsrv.js";
import { $, fmtMoney, fmtQty, setText } from "./util.js";

// Which field an error code concerns (invalid_body names its field itself).
const FIELD_OF = {
  invalid_quantity: "quantity", insufficient_holdings: "quantity", insufficient_funds: "quantity",
  invalid_price: "price", price_out_of_band: "price", invalid_time_in_force: "time_in_force",
  invalid_order_type: "time_in_force",
};

export class Ticket {
  /**
   * @param {import("../marketsrv.js").Client} api
   * @param {{stock: () => any, cash: () => number|null, shares: (s: string) => number, signedIn: () => boolean, askSignIn: () => void}} context
   */
  constructor(api, context) {
    this.api = api;
    this.context = context;
    this.form = /** @type {HTMLFormElement} */ ($("order-form"));
    this.form.addEventListener("submit", (e) => { e.preventDefault(); this.submit(); });
    this.form.addEventListener("input", () => this.refresh());
    this.form.addEventListener("change", (e) => {
      if (e.target.name === "order_type") this.typeChanged();
      this.refresh();
    });
    this.typeChanged();
  }

  get values() {
    const f = this.form.elements;
    return {
      side: f.side.value, order_type: f.order_type.value, quantity: f.quantity.value.trim(),
      price: f.price.value.trim(), time_in_force: f.time_in_force.value,
    };
  }

  typeChanged() {
    const market = this.form.elements.order_type.value === "market";
    this.form.querySelector(".price-field").hidden = market;
    $("price-help").hidden = market;
    const tif = this.form.elements.time_in_force;
    tif.querySelector('[value="gtc"]').disabled = market;
    if (market && tif.value === "gtc") tif.value = "ioc";
    if (!market && tif.value === "ioc") tif.value = "gtc";
  }

  /** A new symbol: its price as the default limit. */
  stockChanged(stock) {
    if (stock) this.form.elements.price.value = stock.current_price.toFixed(2);
    this.clearErrors();
    setText($("order-result"), "");
    this.refresh();
  }

  /** Tick, limits, estimate and what is available: run on every input and market update. */
  refresh() {
    const stock = this.context.stock();
    const v = this.values;
    const buy = v.side === "buy";
    $("submit-order").textContent = `${buy ? "Buy" : "Sell"}${stock ? " " + stock.symbol : ""}`;
    $("submit-order").className = `primary ${buy ? "buy" : "sell"}`;
    if (!stock) return;
    setText($("price-help"), `Tick ${fmtMoney(stock.tick_size)} · limits ${fmtMoney(stock.lower_limit)} – ${fmtMoney(stock.upper_limit)}`);
    const quantity = Number(v.quantity);
    const market = v.order_type === "market";
    const price = market ? (buy ? stock.ask : stock.bid) ?? stock.current_price : Number(v.price);
    const ok = Number.isFinite(quantity) && quantity > 0 && Number.isFinite(price) && price > 0;
    setText($("est-label"), `${market ? "≈ " : ""}Est. ${buy ? "cost" : "proceeds"}`);
    setText($("est-value"), ok ? fmtMoney(Math.round(quantity * price * 100) / 100) : "—");
    if (buy) {
      setText($("avail-label"), "Cash available");
      const cash = this.context.cash();
      setText($("avail-value"), cash === null ? "—" : fmtMoney(cash));
    } else {
      setText($("avail-label"), `${stock.symbol} available`);
      setText($("avail-value"), this.context.signedIn() ? fmtQty(this.context.shares(stock.symbol)) : "—");
    }
  }

  clearErrors() {
    for (const p of this.form.querySelectorAll(".field-error")) p.textContent = "";
    for (const input of this.form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  }

  showError(error) {
    const field = error.field || FIELD_OF[error.code] || "";
    const target = this.form.querySelector(`.field-error[data-field="${field}"]`) || $("err-form");
    target.textContent = error.message;
    const input = field && this.form.elements[field];
    if (input instanceof HTMLElement) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  }

  async submit() {
    if (!this.context.signedIn()) return this.context.askSignIn();
    const stock = this.context.stock();
    if (!stock) return;
    this.clearErrors();
    const v = this.values;
    // Sent as typed: the server checks it and says what is wrong, by field.
    const body = { symbol: stock.symbol, side: v.side, order_type: v.order_type,
      quantity: v.quantity, time_in_force: v.time_in_force };
    if (v.order_type === "limit") body.price = v.price;
    const button = $("submit-order");
    button.disabled = true;
    try {
      const order = await this.api.post("/api/trading/orders/", body);
      const filled = order.filled_quantity
        ? `, ${fmtQty(order.filled_quantity)} filled at ${fmtMoney(order.average_price)}` : "";
      setText($("order-result"), `Order ${order.id}: ${order.status.replace("_", " ")}${filled}. ${order.note}`);
    } catch (error) {
      if (error instanceof ApiError) this.showError(error);
      else throw error;
    } finally {
      button.disabled = false;
    }
  }
}
