// The messages panel: conversations with their unread counts, one conversation open, and a line
// to write in. Sent and received over /ws/chat/ (ChatStream), histories over /api/chat/. Texts
// go in through textContent only: what people write is shown as text, never as HTML.
import { ApiError } from "../marketsrv.js";
import { $, debounce, el, fmtDateTime, setText } from "./util.js";

export class Chat {
  /** @param {import("../marketsrv.js").Client} api */
  constructor(api) {
    this.api = api;
    this.me = null;
    this.stream = null;
    /** @type {{id: number, username: string}|null} the open conversation's other user */
    this.other = null;
    this.shown = new Set(); // message ids in the open conversation
    this.session = 0; // counts sign-ins and sign-outs: an answer for an older one is dropped
    /** @type {any[]|null} live messages that came while the open conversation was read */
    this.arriving = null;
    this.wasOpen = false; // the stream was open once: a later open is a reconnect
    this.refreshThreads = debounce(() => this.loadThreads().catch(() => {}), 300);
    $("chat-new").addEventListener("submit", (e) => { e.preventDefault(); this.openNamed(); });
    $("chat-send").addEventListener("submit", (e) => { e.preventDefault(); this.send(); });
    $("chat-threads").addEventListener("click", (e) => {
      const b = e.target.closest("button[data-user]");
      if (b) this.open({ id: Number(b.dataset.user), username: b.dataset.name }).catch((error) => {
        setText($("err-chat-send"), error.message);
      });
    });
  }

  /** Signed in as `me`: follow /ws/chat/. */
  start(me, onState) {
    this.me = me;
    this.stream?.close();
    this.stream = this.api.chatStream({
      onMessage: (m) => this.arrived(m),
      onSent: (m) => {
        if ($("chat-text").value === m.text) $("chat-text").value = ""; // unless a new draft
        this.arrived(m);
      },
      onUnread: (u) => { setText($("chat-unread"), u.total ? String(u.total) : ""); this.refreshThreads(); },
      onError: (e) => setText($("err-chat-send"), e.error),
      onState: (state, why) => {
        // Back after an outage: what came meanwhile is read again (the chat has no resume).
        if (state === "open" && this.wasOpen && this.other) this.open(this.other).catch(() => {});
        if (state === "open") this.wasOpen = true;
        onState(state, why);
      },
    }).start();
  }

  stop() {
    this.session += 1;
    this.wasOpen = false;
    this.arriving = null;
    $("chat-text").value = "";
    $("chat-new").elements.user.value = "";
    this.stream?.close();
    this.stream = null;
    this.me = null;
    this.other = null;
    this.shown.clear();
    $("chat-threads").replaceChildren();
    $("chat-messages").replaceChildren();
    setText($("chat-with"), "No conversation open");
    setText($("chat-unread"), "");
    $("chat-send").hidden = true;
  }

  async loadThreads() {
    if (!this.me) return;
    const { results } = await this.api.get("/api/chat/threads/");
    const total = results.reduce((sum, t) => sum + t.unread, 0);
    setText($("chat-unread"), total ? String(total) : "");
    $("chat-threads").replaceChildren(...results.map((t) => el("li", {},
      el("button", { type: "button", "data-user": t.with.id, "data-name": t.with.username,
        "aria-current": String(this.other?.id === t.with.id) },
      el("span", {}, t.with.username), el("span", { class: "count" }, t.unread ? String(t.unread) : "")))));
  }

  async openNamed() {
    const input = $("chat-new").elements.user;
    const session = this.session;
    setText($("err-chat-user"), "");
    try {
      const thread = await this.api.post("/api/chat/threads/", { user: input.value.trim() });
      if (session !== this.session) return;
      input.value = "";
      await this.open(thread.with);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      setText($("err-chat-user"), error.message);
    }
  }

  /** Open the conversation with `other`: its last 50 messages, then live. */
  async open(other) {
    const session = this.session;
    this.other = other;
    this.arriving = []; // live messages meanwhile: merged with the page by id
    setText($("chat-with"), `With ${other.username}`);
    $("chat-send").hidden = false;
    const page = await this.api.get(`/api/chat/messages/${other.id}/`);
    if (this.other !== other || session !== this.session) return;
    const merged = new Map([...page.results, ...this.arriving].map((m) => [m.id, m]));
    this.arriving = null;
    this.shown.clear();
    $("chat-messages").replaceChildren();
    for (const m of [...merged.values()].sort((a, b) => a.id - b.id)) this.show(m);
    this.markRead();
    await this.loadThreads();
  }

  /** What the open conversation shows is read: up to the last message shown. */
  markRead() {
    if (this.other && this.shown.size) this.stream?.read(this.other.id, Math.max(...this.shown));
  }

  show(m) {
    if (this.shown.has(m.id)) return;
    this.shown.add(m.id);
    const list = $("chat-messages");
    list.append(el("li", { class: m.sender === this.me?.id ? "mine" : "" },
      el("time", { datetime: m.created_at }, `${m.sender_username} · ${fmtDateTime(Date.parse(m.created_at))}`),
      m.text));
    list.scrollTop = list.scrollHeight;
  }

  /** A message sent or received on any socket. */
  arrived(m) {
    const other = m.sender === this.me?.id ? m.receiver : m.sender;
    if (this.other && other === this.other.id) {
      if (this.arriving) this.arriving.push(m); // the conversation is being read: merged then
      else {
        this.show(m);
        if (m.sender !== this.me?.id && !$("view-chat").hidden) this.markRead();
      }
    }
    this.refreshThreads();
  }

  send() {
    const input = $("chat-text");
    setText($("err-chat-send"), "");
    if (!this.other || !input.value.trim()) return;
    this.stream?.message(this.other.id, input.value); // cleared once `chat.sent` says it is kept
  }
}
