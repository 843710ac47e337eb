// marketsrv.js: the one small client a frontend needs to talk to marketsrv.
//
// Served by every marketsrv at /static/js/marketsrv.js (a stable path: import it from there, or
// copy it with streams.js beside it; no other dependencies). It wraps the REST API
// (docs/protocol.md) here, and the streams of streams.js, each reconnecting by itself:
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

import { ChatStream, MarketStream, SymbolStream, UserStream } from "./streams.js";

export { ChatStream, MarketStream, SymbolStream, UserStream };

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
