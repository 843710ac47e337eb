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
    this.refreshThreads = debounce(() => this.loadThreads().catch(() => {}), 300);
    $("chat-new").addEventListener("submit", (e) => { e.preventDefault(); this.openNamed(); });
    $("chat-send").addEventListener("submit", (e) => { e.preventDefault(); this.send(); });
    $("chat-threads").addEventListener("click", (e) => {
      const b = e.target.closest("button[data-user]");
      if (b) this.open({ id: Number(b.dataset.user), username: b.dataset.name }).catch(() => {});
    });
  }

  /** Signed in as `me`: follow /ws/chat/. */
  start(me, onState) {
    this.me = me;
    this.stream?.close();
    this.stream = this.api.chatStream({
      onMessage: (m) => this.arrived(m),
      onSent: (m) => { $("chat-text").value = ""; this.arrived(m); },
      onUnread: (u) => { setText($("chat-unread"), u.total ? String(u.total) : ""); this.refreshThreads(); },
      onError: (e) => setText($("err-chat-send"), e.error),
      onState,
    }).start();
  }

  stop() {
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
    setText($("err-chat-user"), "");
    try {
      const thread = await this.api.post("/api/chat/threads/", { user: input.value.trim() });
      input.value = "";
      await this.open(thread.with);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      setText($("err-chat-user"), error.message);
    }
  }

  /** Open the conversation with `other`: its last 50 messages, then live. */
  async open(other) {
    this.other = other;
    this.shown.clear();
    setText($("chat-with"), `With ${other.username}`);
    $("chat-send").hidden = false;
    const page = await this.api.get(`/api/chat/messages/${other.id}/`);
    if (this.other !== other) return;
    $("chat-messages").replaceChildren();
    for (const m of page.results.reverse()) this.show(m);
    this.stream?.read(other.id);
    await this.loadThreads();
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
      this.show(m);
      if (m.sender !== this.me?.id && !$("view-chat").hidden) this.stream?.read(other);
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
