// marketsrv.js: the one small client a frontend needs to talk to marketsrv.
//
// Served by every marketsrv at /static/js/marketsrv.js (a stable path: import it from there, or
// copy it; it has no dependencies). It wraps the REST API (docs/protocol.md) and the three
// streams, each reconnecting by itself:
//   MarketStream  /ws/market/ for many symbols: market_data, market_state
//   SymbolStream  /ws/market/ for one symbol: its book kept in sync by sequence numbers (diffs,
//                 re-snapshot on a gap), its trades and its forming 1-minute candle
//   UserStream    /ws/user/: the user's events, resumed after the last one seen on reconnect,
//                 none lost and none twice
//   ChatStream    /ws/chat/: direct messages between users, sent and received
//
//   import { Client } from "/static/js/marketsrv.js";
//   const api = new Client();                       // same origin; new Client({ baseUrl })
//   const { token } = await api.login("demo", "marketsrv-demo");
//   const stocks = await api.get("/api/stocks/?page_size=100");
//   const market = api.marketStream({ onData: (d) => console.log(d.symbol, d.price) });
//   market.subscribe(["SCOM", "KCB"]);
//   try { await api.post("/api/trading/orders/", { symbol: "SCOM", side: "buy", quantity: 10 }) }
//   catch (e) { console.log(e.code, e.field, e.message) }   // an ApiError, in the server's words

/**
 * @typedef {{price: number, quantity: number, total?: number}} Level
 * @typedef {{symbol: string, bids: Level[], asks: Level[], seq: number, timestamp: number}} Book
 * @typedef {{symbol: string, id: number, price: number, quantity: number, side: "buy"|"sell", timestamp: number}} Trade
 * @typedef {{symbol: string, time: number, open: number, high: number, low: number, close: number, volume: number}} Candle
 * @typedef {"connecting"|"open"|"closed"} LinkState
 * @typedef {{type: string, data: any, seq?: number, ts: number}} Frame
 */

/** An error answer of the REST API: `code` is stable, `message` the server's words. */
export class ApiError extends Error {
  /** @param {number} status @param {Record<string, any>} body */
  constructor(status, body) {
    super(body.message || body.detail || body.error || `HTTP ${status}`);
    this.status = status;
    /** @type {string} */ this.code = body.code || "http_error";
    /** @type {string|undefined} the request field it concerns, when the server names one */
    this.field = body.field;
    this.body = body;
  }
}

export class Client {
  /** @param {{baseUrl?: string, token?: string|null}} [options] */
  constructor({ baseUrl = globalThis.location?.origin ?? "", token = null } = {}) {
    this.baseUrl = baseUrl.replace(/\/$/, "");
    /** @type {string|null} */ this.token = token;
    /** Called when a call with the token is answered 401 (expired or revoked): sign out there.
     * @type {((error: ApiError) => void)|null} */
    this.onUnauthorized = null;
  }

  /**
   * One REST call: the parsed JSON answer, or an ApiError (a network failure: code "network").
   * @param {string} method @param {string} path @param {any} [body]
   */
  async request(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let response;
    try {
      response = await fetch(this.baseUrl + path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new ApiError(0, { code: "network", message: "the server cannot be reached" });
    }
    const text = await response.text();
    let parsed = null;
    try { parsed = text ? JSON.parse(text) : null; } catch { parsed = { message: text }; }
    if (!response.ok) {
      const error = new ApiError(response.status, parsed || {});
      if (response.status === 401 && this.token) this.onUnauthorized?.(error);
      throw error;
    }
    return parsed;
  }

  get(path) { return this.request("GET", path); }
  post(path, body = {}) { return this.request("POST", path, body); }
  delete(path) { return this.request("DELETE", path); }

  /** Log in; the token is kept for later calls and streams. */
  async login(username, password) {
    const answer = await this.post("/api/accounts/login/", { username, password });
    this.token = answer.token;
    return answer;
  }

  async register(username, password) {
    const answer = await this.post("/api/accounts/register/", { username, password });
    this.token = answer.token;
    return answer;
  }

  async logout() {
    try { await this.post("/api/accounts/logout/"); } finally { this.token = null; }
  }

  /** ws:// or wss:// URL of a stream path on this server. */
  wsUrl(path) {
    const base = new URL(this.baseUrl || globalThis.location.href);
    base.protocol = base.protocol === "https:" ? "wss:" : "ws:";
    base.pathname = path;
    base.search = "";
    return base.toString();
  }

  /** @param {ConstructorParameters<typeof MarketStream>[1]} handlers */
  marketStream(handlers) { return new MarketStream(this, handlers); }
  /** @param {ConstructorParameters<typeof SymbolStream>[1]} handlers */
  symbolStream(handlers) { return new SymbolStream(this, handlers); }
  /** @param {ConstructorParameters<typeof UserStream>[1]} handlers */
  userStream(handlers) { return new UserStream(this, handlers); }
  /** @param {ConstructorParameters<typeof ChatStream>[1]} handlers */
  chatStream(handlers) { return new ChatStream(this, handlers); }
}

// Close codes after which reconnecting cannot help.
const FINAL_CLOSES = new Set([4001, 4002, 4004]);

/** A WebSocket that reconnects with backoff (0.5 s doubling to 8 s) until `close()`. */
class Link {
  /** @param {Client} client @param {string} path @param {{onState?: (s: LinkState, why?: string) => void}} handlers */
  constructor(client, path, handlers) {
    this.client = client;
    this.path = path;
    this.handlers = handlers;
    /** @type {LinkState} */ this.state = "closed";
    this.delay = 500;
    this.stopped = false;
    /** @type {WebSocket|null} */ this.socket = null;
    this.timer = 0;
  }

  start() {
    this.stopped = false;
    this.connect();
    return this;
  }

  connect() {
    clearTimeout(this.timer);
    this.setState("connecting");
    const socket = new WebSocket(this.client.wsUrl(this.path));
    this.socket = socket;
    socket.onopen = () => {
      this.delay = 500;
      this.setState("open");
      this.opened();
    };
    socket.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      this.received(frame);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stopped) return this.setState("closed");
      if (FINAL_CLOSES.has(event.code)) {
        this.stopped = true;
        return this.setState("closed", event.reason || `closed (${event.code})`);
      }
      this.setState("connecting", event.reason || "connection lost");
      this.timer = setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 8000);
    };
  }

  /** @param {LinkState} state @param {string} [why] */
  setState(state, why) {
    this.state = state;
    this.handlers.onState?.(state, why);
  }

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.socket?.close(1000);
    this.socket = null;
    this.setState("closed");
  }

  opened() {}
  /** @param {Frame} frame */
  received(frame) {}
}

/** /ws/market/ for many symbols: their market data (batched) and the market's state. */
export class MarketStream extends Link {
  /**
   * @param {Client} client
   * @param {{onData?: (d: any) => void, onMarketState?: (s: any) => void, onError?: (e: any) => void, onState?: (s: LinkState, why?: string) => void}} handlers
   */
  constructor(client, handlers) {
    super(client, "/ws/market/", handlers);
    /** @type {string[]} */ this.symbols = [];
  }

  /** Follow these symbols (the whole list; it is sent again after every reconnect). */
  subscribe(symbols) {
    this.symbols = [...symbols];
    if (this.state === "closed" && !this.socket) this.start();
    else this.opened();
    return this;
  }

  opened() {
    if (this.symbols.length) this.send({ type: "subscribe", symbols: this.symbols, batch: true });
  }

  received(frame) {
    const h = this.handlers;
    if (frame.type === "market_data") h.onData?.(frame.data);
    else if (frame.type === "bulk_update") frame.data.updates.forEach((d) => h.onData?.(d));
    else if (frame.type === "market_state") h.onMarketState?.(frame.data);
    else if (frame.type === "error") h.onError?.(frame.data);
  }
}

/**
 * /ws/market/ for one symbol at a time: its order book kept exactly in sync with the stream's
 * sequence numbers (a whole book, then diffs whose prev_seq must meet the book's seq; a gap asks
 * for a new snapshot), its trades and its forming 1-minute candle.
 */
export class SymbolStream extends Link {
  /**
   * @param {Client} client
   * @param {{onBook?: (b: Book) => void, onTrade?: (t: Trade) => void, onCandle?: (c: Candle) => void, onData?: (d: any) => void, onResync?: () => void, onState?: (s: LinkState, why?: string) => void}} handlers
   */
  constructor(client, handlers) {
    super(client, "/ws/market/", handlers);
    /** @type {string|null} */ this.symbol = null;
    this.depth = 20;
    this.resetBook();
    this.gaps = 0; // books asked for again after a gap (shown for the curious)
  }

  resetBook() {
    /** @type {Map<number, number>} */ this.bids = new Map();
    /** @type {Map<number, number>} */ this.asks = new Map();
    this.seq = -1; // no book yet: updates wait for a snapshot
    this.chained = false; // an update was applied since the snapshot
  }

  /** Show `symbol` with `depth` levels a side (1 to 50). */
  follow(symbol, depth = this.depth) {
    const previous = this.symbol;
    this.symbol = symbol;
    this.depth = depth;
    this.resetBook();
    if (!this.socket && this.state === "closed") return this.start();
    if (previous) this.send({ type: "unsubscribe", symbols: [previous] });
    this.opened();
    return this;
  }

  opened() {
    this.resetBook();
    if (!this.symbol) return;
    this.send({
      type: "subscribe", symbols: [this.symbol], book_mode: "diff", depth: this.depth,
      trades: true, candles: true,
    });
  }

  received(frame) {
    const d = frame.data;
    if (!d || (d.symbol && d.symbol !== this.symbol)) return; // a late frame of the last symbol
    switch (frame.type) {
      case "order_book": return this.snapshot(d);
      case "order_book_update": return this.update(d);
      case "trade": return this.handlers.onTrade?.(d);
      case "candle": return this.handlers.onCandle?.(d);
      case "market_data": return this.handlers.onData?.(d);
    }
  }

  snapshot(book) {
    this.bids = new Map(book.bids.map((l) => [l.price, l.quantity]));
    this.asks = new Map(book.asks.map((l) => [l.price, l.quantity]));
    this.seq = book.seq;
    this.chained = false;
    this.emit(book.timestamp);
  }

  update(diff) {
    if (this.seq < 0) return; // waiting for the snapshot asked for
    if (diff.seq <= this.seq) return; // older than the book we have
    // The first update after a snapshot may start before it (prev_seq <= seq); each later one
    // must start exactly where the last ended. Anything else is a break in the chain.
    if (this.chained ? diff.prev_seq !== this.seq : diff.prev_seq > this.seq) {
      // A gap: updates were missed. Ask for the whole book again and wait for it.
      this.gaps += 1;
      this.seq = -1;
      this.handlers.onResync?.();
      this.send({ type: "snapshot", symbols: [this.symbol], depth: this.depth });
      return;
    }
    for (const [side, levels] of [[this.bids, diff.bids], [this.asks, diff.asks]]) {
      for (const { price, quantity } of levels) {
        if (quantity === 0) side.delete(price);
        else side.set(price, quantity);
      }
    }
    this.seq = diff.seq;
    this.chained = true;
    this.emit(diff.timestamp);
  }

  emit(timestamp) {
    const sides = (map, sign) => [...map]
      .sort((a, b) => sign * (a[0] - b[0]))
      .slice(0, this.depth)
      .map(([price, quantity]) => ({ price, quantity }));
    this.handlers.onBook?.({
      symbol: this.symbol, bids: sides(this.bids, -1), asks: sides(this.asks, 1),
      seq: this.seq, timestamp,
    });
  }
}

/**
 * /ws/user/: the signed-in user's events (order.*, fill, wallet, holding, account.reset), each
 * numbered; after a reconnect it resumes after the last number seen, so none is lost or shown
 * twice. `resync_required` (too much was missed) calls onResync: read the state over REST again.
 */
export class UserStream extends Link {
  /**
   * @param {Client} client
   * @param {{onEvent?: (f: Frame) => void, onReady?: (d: any) => void, onResync?: (d: any) => void, onState?: (s: LinkState, why?: string) => void}} handlers
   */
  constructor(client, handlers) {
    super(client, "/ws/user/", handlers);
    /** @type {number|null} */ this.lastSeq = null;
  }

  opened() {
    const auth = { type: "auth", token: this.client.token };
    if (this.lastSeq !== null) auth.after = this.lastSeq;
    this.send(auth);
  }

  received(frame) {
    if (frame.type === "ready") {
      if (this.lastSeq === null) this.lastSeq = frame.data.seq;
      return this.handlers.onReady?.(frame.data);
    }
    if (frame.type === "resync_required") {
      this.lastSeq = frame.data.seq;
      return this.handlers.onResync?.(frame.data);
    }
    if (frame.type === "error") {
      // `invalid_after`: the server has fewer events than we thought (a restored backup): it
      // goes on from its last one. `event_unreadable` stands for one event. Either way, read
      // the state again and follow from the server's number.
      const seq = frame.data?.code === "invalid_after" ? frame.data.seq : frame.seq;
      if (typeof seq === "number") {
        this.lastSeq = seq;
        this.handlers.onResync?.(frame.data);
      }
      return;
    }
    if (typeof frame.seq !== "number") return; // pong
    if (this.lastSeq !== null && frame.seq <= this.lastSeq) return; // seen already
    this.lastSeq = frame.seq;
    this.handlers.onEvent?.(frame);
  }
}

/**
 * /ws/chat/: direct messages. `send(to, text, data)` sends one (to: a user id or username);
 * `read(user)` marks a conversation read. The server answers `chat.sent` to this socket and
 * pushes `chat.message` to the receiver's sockets and your others; `chat.unread` on connect and
 * after a read. After a reconnect, read what came meanwhile over REST (/api/chat/threads/).
 */
export class ChatStream extends Link {
  /**
   * @param {Client} client
   * @param {{onMessage?: (m: any) => void, onSent?: (m: any) => void, onUnread?: (u: any) => void, onError?: (e: any) => void, onState?: (s: LinkState, why?: string) => void}} handlers
   */
  constructor(client, handlers) {
    super(client, "/ws/chat/", handlers);
  }

  opened() { this.send({ type: "auth", token: this.client.token }); }

  /** @param {string|number} to @param {string} text @param {any} [data] */
  message(to, text, data) { this.send({ type: "chat.message", to, text, data }); }

  /** Mark what `user` sent you read, up to message `until` (the last one you showed). */
  read(user, until) { this.send({ type: "chat.read", with: user, until }); }

  received(frame) {
    const h = this.handlers;
    if (frame.type === "chat.message") h.onMessage?.(frame.message);
    else if (frame.type === "chat.sent") h.onSent?.(frame.message);
    else if (frame.type === "chat.unread") h.onUnread?.(frame.unread);
    else if (frame.type === "error") h.onError?.(frame);
  }
}
