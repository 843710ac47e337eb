// Formatting and small DOM helpers of the screen. Every text goes in through textContent (never
// innerHTML): whatever a server or a user sends is shown inert.

const money = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const whole = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

/** 1234.5 -> "1,234.50"; null -> "—" */
export const fmtMoney = (v) => (v === null || v === undefined || Number.isNaN(v) ? "—" : money.format(v));
export const fmtQty = (v) => (v === null || v === undefined ? "—" : whole.format(v));
export const fmtSigned = (v) => (v === null || v === undefined ? "—" : (v > 0 ? "+" : "") + money.format(v));
export const fmtPct = (v) => (v === null || v === undefined ? "—" : (v > 0 ? "+" : "") + money.format(v) + "%");
export const fmtTime = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
export const fmtDateTime = (ms) => new Date(ms).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });

/** Cents as integers, so sums of money shown here are exact too. */
export const cents = (kes) => Math.round(kes * 100);
export const kes = (c) => c / 100;

/** The CSS class of a signed figure. */
export const tone = (v) => (v > 0 ? "up" : v < 0 ? "down" : "");

/** @returns {HTMLElement} */
export const $ = (id) => document.getElementById(id);

/**
 * An element with text and attributes: el("td", { class: "num" }, "12.5").
 * @param {string} tag @param {Record<string, any>} [attrs] @param {...(Node|string)} children
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

/** Set a text only when it changed (cheap repeated renders). */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/** Set text and the up/down class of a signed figure. */
export function setSigned(node, value, text) {
  setText(node, text);
  node.classList.toggle("up", value > 0);
  node.classList.toggle("down", value < 0);
}

/** Run `fn` at most once per animation frame, with the latest arguments. */
export function perFrame(fn) {
  let pending = false;
  let last = [];
  return (...args) => {
    last = args;
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      fn(...last);
    });
  };
}

/** Call `fn` once `ms` after the last call. */
export function debounce(fn, ms) {
  let timer = 0;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
