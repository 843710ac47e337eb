// The trading screen: wires the client module (../marketsrv.js) to the views. It uses only the
// public API, as any frontend would: REST for state, /ws/market/ for the watchlist,
// /ws/market/ again for the selected symbol's book, trades and candles, /ws/user/ for the account.
import { ApiError, Client } from "../marketsrv.js";
import { Account } from "./account.js";
import { BookView, Tape } from "./book.js";
import { CandleChart } from "./chart.js";
import { Chat } from "./chat.js";
import { Ticket } from "./ticket.js";
import { $, fmtMoney, fmtPct, fmtQty, fmtSigned, perFrame, setSigned, setText } from "./util.js";
import { Watchlist } from "./watchlist.js";

const TOKEN_KEY = "marketsrv.token";
const api = new Client({ token: localStorage.getItem(TOKEN_KEY) });
/** @type {Map<string, any>} every stock as GET /api/stocks/ shows it, kept live */
const stocks = new Map();
let selected = null;
let interval = "1m";
let depth = Number($("book-depth").value);
let user = null;
let userStream = null;
const everOpen = {}; // stream name -> it was open once
const reconnecting = {}; // stream name -> lost after being open, trying again

const watchlist = new Watchlist((symbol) => void select(symbol));
const book = new BookView();
const tape = new Tape();
const chart = new CandleChart($("chart"), api);
const chat = new Chat(api);
const account = new Account(api, {
  price: (symbol) => stocks.get(symbol)?.current_price ?? null,
  changed: () => { ticket.refresh(); markMine(); },
});
const ticket = new Ticket(api, {
  stock: () => stocks.get(selected),
  cash: () => account.wallet?.available ?? null,
  shares: (symbol) => account.shares(symbol),
  signedIn: () => user !== null,
  askSignIn: () => openAuth(),
});

// -- the market --------------------------------------------------------------------------------

const drawSymbol = perFrame(() => {
  const s = stocks.get(selected);
  if (!s) return;
  setText($("sym-symbol"), s.symbol);
  setText($("sym-name"), s.name);
  setText($("sym-price"), fmtMoney(s.current_price));
  setSigned($("sym-change"), s.change, `${fmtSigned(s.change)} (${fmtPct(s.change_percent)})`);
  setState($("sym-state"), s.state);
  setText($("sym-prev"), fmtMoney(s.previous_close));
  setText($("sym-range"), `${fmtMoney(s.low)} – ${fmtMoney(s.high)}`);
  setText($("sym-volume"), fmtQty(s.volume));
  setText($("sym-tick"), fmtMoney(s.tick_size));
  setText($("sym-limits"), `${fmtMoney(s.lower_limit)} – ${fmtMoney(s.upper_limit)}`);
  ticket.refresh();
});
const drawAccount = perFrame(() => account.draw());

function setState(node, state) {
  node.dataset.state = state || "unknown";
  setText(node, (state || "…").replace("_", "-"));
}

/** A market_data frame merged into the stock it updates. */
function marketData(d) {
  const s = stocks.get(d.symbol);
  if (!s) return;
  Object.assign(s, {
    current_price: d.price, change: d.change, change_percent: d.changePercent, volume: d.volume,
    high: d.high, low: d.low, open: d.open, previous_close: d.previous_close, bid: d.bid,
    ask: d.ask, state: d.state,
  });
  watchlist.update(d);
  if (d.symbol === selected) drawSymbol();
  if (account.holdings.has(d.symbol)) drawAccount();
}

async function loadStocks() {
  let next = "/api/stocks/?page_size=100";
  const all = [];
  while (next) {
    const page = await api.get(next);
    all.push(...page.results);
    next = page.next ? new URL(page.next).pathname + new URL(page.next).search : null;
  }
  for (const s of all) stocks.set(s.symbol, s);
  watchlist.load(all);
}

async function select(symbol) {
  if (!stocks.has(symbol)) return;
  selected = symbol;
  watchlist.select(symbol);
  if (location.hash !== `#${symbol}`) history.replaceState(null, "", `#${symbol}`);
  book.clear(symbol);
  tape.clear();
  symbolStream.follow(symbol, depth);
  drawSymbol();
  ticket.stockChanged(stocks.get(symbol));
  markMine();
  await Promise.all([refreshStock(symbol), chart.show(symbol, interval), loadTape(symbol)])
    .catch(report);
}

/** The stock's own figures that the stream does not carry (tick, limits) read again. */
async function refreshStock(symbol) {
  Object.assign(stocks.get(symbol), await api.get(`/api/stocks/${encodeURIComponent(symbol)}/`));
  if (symbol === selected) drawSymbol();
}

async function loadTape(symbol) {
  const answer = await api.get(`/api/stocks/${encodeURIComponent(symbol)}/trades/?limit=60`);
  if (symbol === selected) tape.load(answer.trades);
}

function markMine() {
  if (!selected) return;
  const { bids, asks } = account.restingPrices(selected);
  book.setMine(bids, asks);
}

function marketState(m) {
  setState($("market-state"), m.state);
  $("market-state").title = `trading day ${m.trading_day} (${m.calendar} calendar)`;
  if (selected) refreshStock(selected).catch(report); // a new day has new limits
}

// -- connections: shown, and caught up after an outage --------------------------------------------

function linkState(name, state, why) {
  const node = $(`link-${name}`);
  node.dataset.state = state;
  node.title = `${name} stream: ${state}${why ? ` (${why})` : ""}`;
  node.setAttribute("aria-label", `${name} stream ${state === "open" ? "live" : state}`);
  if (state === "open") {
    if (reconnecting[name]) caughtUp(name);
    everOpen[name] = true;
    reconnecting[name] = false;
  } else {
    reconnecting[name] = state === "connecting" && everOpen[name] === true;
  }
  const down = Object.keys(reconnecting).filter((n) => reconnecting[n]);
  const outage = $("outage");
  outage.hidden = down.length === 0;
  outage.textContent = down.length ? `Connection lost (${down.join(", ")}): reconnecting…` : "";
}

/** Back after an outage: what the streams cannot replay is read again over REST. */
function caughtUp(name) {
  if (name === "market") api.get("/api/health/").then((h) => marketState(h.market)).catch(() => {});
  if (name === "symbol" && selected) {
    chart.show(selected, interval).catch(() => {});
    loadTape(selected).catch(() => {});
  }
  // The user stream resumes after its last event by itself: nothing is read again.
}

const market = api.marketStream({
  onData: marketData,
  onMarketState: marketState,
  onState: (s, why) => linkState("market", s, why),
});
const symbolStream = api.symbolStream({
  onBook: (b) => book.show(b),
  onTrade: (t) => tape.add(t),
  onCandle: (c) => chart.candle(c)?.catch(report),
  onState: (s, why) => linkState("symbol", s, why),
});

// -- signing in --------------------------------------------------------------------------------

function openAuth() {
  const dialog = /** @type {HTMLDialogElement} */ ($("auth"));
  for (const p of dialog.querySelectorAll(".field-error")) p.textContent = "";
  dialog.showModal();
}

async function authSubmit(e) {
  e.preventDefault();
  const form = /** @type {HTMLFormElement} */ (e.target);
  const mode = e.submitter?.value || "login";
  for (const p of form.querySelectorAll(".field-error")) p.textContent = "";
  const username = form.elements.username.value;
  const password = form.elements.password.value;
  try {
    const answer = mode === "register" ? await api.register(username, password) : await api.login(username, password);
    localStorage.setItem(TOKEN_KEY, answer.token);
    $("auth").close();
    form.reset();
    await signedIn(answer.user);
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    const field = error.field || ({ invalid_username: "username", username_taken: "username", invalid_password: "password" })[error.code] || "";
    const target = form.querySelector(`.field-error[data-field="${field}"]`) || $("err-auth");
    target.textContent = error.message;
  }
}

async function signedIn(me) {
  user = me;
  setText($("who"), me.username);
  $("sign-in").hidden = true;
  $("sign-out").hidden = false;
  $("account-hint").hidden = true;
  userStream?.close();
  let loaded = false; // read over REST once; after a reconnect the stream resumes instead
  userStream = api.userStream({
    onReady: () => {
      if (!loaded) account.load().then(() => { loaded = true; }, report);
    },
    onResync: () => account.load().catch(report),
    onEvent: (frame) => account.event(frame),
    onState: (s, why) => {
      linkState("user", s, why);
      if (s === "closed" && why && user) signedOut(); // the token was refused (4001/4002)
    },
  }).start();
  chat.start(me, (s, why) => linkState("chat", s, why));
  ticket.refresh();
}

function signedOut() {
  const was = user !== null;
  user = null;
  api.token = null;
  localStorage.removeItem(TOKEN_KEY);
  userStream?.close();
  userStream = null;
  account.clear();
  chat.stop();
  setText($("who"), "");
  $("sign-in").hidden = false;
  $("sign-out").hidden = true;
  $("account-hint").hidden = false;
  linkState("user", "closed");
  markMine();
  ticket.refresh();
  if (was) openAuth();
}

/** A failed background read: a 401 signs out (Client.onUnauthorized); others are logged. */
function report(error) {
  if (error instanceof ApiError && error.status === 401) return;
  if (error instanceof ApiError && error.code === "network") return; // the link states say it
  console.warn(error);
}
api.onUnauthorized = () => { if (user) signedOut(); };

// -- the page ----------------------------------------------------------------------------------

function tabs() {
  const all = [...document.querySelectorAll('[role="tab"]')];
  const show = (tab) => {
    for (const t of all) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
    if (tab.id === "tab-performance" && user) account.loadHistory().catch(report);
    if (tab.id === "tab-chat" && user) chat.loadThreads().catch(report);
  };
  for (const t of all) {
    t.addEventListener("click", () => show(t));
    t.addEventListener("keydown", (e) => {
      const i = all.indexOf(t);
      const next = e.key === "ArrowRight" ? all[(i + 1) % all.length] : e.key === "ArrowLeft" ? all[(i - 1 + all.length) % all.length] : null;
      if (next) { e.preventDefault(); next.focus(); show(next); }
    });
  }
}

async function main() {
  $("auth-form").addEventListener("submit", authSubmit);
  $("auth-cancel").addEventListener("click", () => $("auth").close());
  $("sign-in").addEventListener("click", openAuth);
  $("sign-out").addEventListener("click", () => { api.logout().catch(() => {}); signedOut(); });
  $("book-depth").addEventListener("change", (e) => {
    depth = Number(e.target.value);
    if (selected) { book.clear(selected); symbolStream.follow(selected, depth); }
  });
  for (const b of document.querySelectorAll("[data-interval]")) {
    b.addEventListener("click", () => {
      interval = b.dataset.interval;
      for (const o of document.querySelectorAll("[data-interval]")) o.setAttribute("aria-pressed", String(o === b));
      if (selected) chart.show(selected, interval).catch(report);
    });
  }
  tabs();
  await loadStocks();
  market.subscribe([...stocks.keys()]);
  api.get("/api/health/").then((h) => marketState(h.market)).catch(report);
  const wanted = decodeURIComponent(location.hash.slice(1)).toUpperCase();
  await select(stocks.has(wanted) ? wanted : [...stocks.keys()][0]);
  if (api.token) {
    try {
      signedIn(await api.get("/api/accounts/me/"));
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) signedOut();
      else throw error;
    }
  }
}

main().catch((error) => {
  console.error(error);
  $("outage").hidden = false;
  $("outage").textContent = `The page could not start: ${error.message}`;
});
