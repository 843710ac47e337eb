// streams.js: the WebSocket streams of the marketsrv client (marketsrv.js makes them with its
// Client, which gives them the server's address and the token): a Link reconnects with backoff,
// and each stream keeps what it needs across reconnects (subscriptions, the book's sequence, the
// user stream's last event).

/**
 * @typedef {{price: number, quantity: number, total?: number}} Level
 * @typedef {{symbol: string, bids: Level[], asks: Level[], seq: number, timestamp: number}} Book
 * @typedef {{symbol: string, id: number, price: number, quantity: number, side: "buy"|"sell", timestamp: number}} Trade
 * @typedef {{symbol: string, time: number, open: number, high: number, low: number, close: number, volume: number}} Candle
 * @typedef {"connecting"|"open"|"closed"} LinkState
 * @typedef {{type: string, data: any, seq?: number, ts: number}} Frame
 */

/** @typedef {import("./marketsrv.js").Client} Client */

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
