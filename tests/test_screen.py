"""The web screen at `/` in a real browser: Debian's chromium driven by playwright, against a real
server process on a free port. The page is used as a trader would: watch, sign in, trade, lose
the connection and get it back. No console errors are allowed anywhere.

Screenshots of the main screen (desktop and phone widths) are saved in `.artifacts/screenshots/`
for people to look at; `docs/screen.png` in the README is one of them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright import sync_api as playwright_api

from tests.builders import REPO

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():  # scripts/install --test installs it; say so instead of a traceback
    pytest.fail(f"{CHROMIUM} is missing: run scripts/install --test", pytrace=False)

ARTIFACTS = REPO / ".artifacts" / "screenshots"
WAIT_MS = 20_000  # for the page to show what a stream or an answer brought
SYMBOLS = 29  # the bundled NSE universe


class Server:
    """`python -m marketsrv` on 127.0.0.1 on a database of its own; restartable on its port."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETSRV_")}
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [
            sys.executable, "-m", "marketsrv", "--port", str(self.port), "--database",
            str(self.database), "--seed", "21", "--history-days", "20",
            "--history-minute-days", "1", "--log-level", "warning",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        out = self.proc.stdout
        assert out is not None
        lines: list[str] = []
        while not self.url:  # the test's timeout bounds this
            line = out.readline().decode()
            assert line, f"the server exited early: {''.join(lines)}"
            lines.append(line)
            if line.startswith("listening on "):
                self.url = line.split()[2]
                self.port = int(self.url.rsplit(":", 1)[1])
        # Read what it writes from now on, so a full pipe never stops it.
        threading.Thread(target=lambda: [None for _ in out], daemon=True).start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("screen") / "screen.db")
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


class Page:
    """A browser page on the server that fails the test on any console error."""

    def __init__(self, browser: Any, server: Server, **context: Any) -> None:
        self.context = browser.new_context(**context)
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.errors: list[str] = []
        self.expected: tuple[str, ...] = ()  # the starts of errors a test causes on purpose
        self.page.on("console", self.console)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.server = server

    def console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def until(self, predicate: str, arg: Any = None) -> None:
        """Wait until the JavaScript function `predicate(arg)` is true in the page. (Polled
        from here: playwright's wait_for_function compiles its predicate with eval, which the
        page's Content-Security-Policy rightly refuses.)"""
        deadline = time.monotonic() + WAIT_MS / 1000
        while not self.page.evaluate(predicate, arg):
            assert time.monotonic() < deadline, f"not true within {WAIT_MS} ms: {predicate}"
            self.page.wait_for_timeout(100)

    def changed(self, element_id: str, before: str) -> None:
        """Wait until the element's text is no longer `before`."""
        self.until(
            f"() => document.getElementById('{element_id}').textContent !== {json.dumps(before)}"
        )

    def at_least(self, selector: str, count: int = 1) -> None:
        self.until(f"() => document.querySelectorAll('{selector}').length >= {count}")

    def open(self, path: str = "/") -> Any:
        self.page.goto(self.server.url + path)
        self.until(f"() => document.querySelectorAll('#watchlist tr').length === {SYMBOLS}")
        return self.page

    def sign_in(self, username: str = "demo", password: str = "marketsrv-demo") -> None:
        p = self.page
        p.click("#sign-in")
        p.fill("#auth input[name=username]", username)
        p.fill("#auth input[name=password]", password)
        p.click("#auth button[value=login]")
        p.wait_for_selector("#sign-out:not([hidden])")
        self.until("() => document.getElementById('wallet-balance').textContent !== '—'")

    def order(self, side: str, order_type: str, quantity: str, price: str = "") -> None:
        """Fill in the order ticket and send it."""
        p = self.page
        p.check(f"input[name=side][value={side}]")
        p.select_option("select[name=order_type]", order_type)
        p.fill("input[name=quantity]", quantity)
        if order_type == "limit":
            p.fill("input[name=price]", price)
        p.click("#submit-order")

    def close(self) -> None:
        self.context.close()
        unexpected = [e for e in self.errors if not e.startswith(self.expected)]
        assert unexpected == [], unexpected


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Page]:
    p = Page(browser, server, viewport={"width": 1400, "height": 1000})
    yield p
    p.close()


def text(page: Any, selector: str) -> str:
    return str(page.text_content(selector)).strip()


def test_the_market_moves_and_the_book_fills(page: Page) -> None:
    p = page.open("/#SCOM")
    assert text(p, "#sym-symbol") == "SCOM"
    page.at_least("#book tr", 5)
    page.at_least("#chart canvas")
    # The book is kept by sequence numbers: the shown seq moves as diffs arrive.
    first = text(p, "#book-spread")
    page.until(f"() => document.getElementById('book-spread').textContent !== {json.dumps(first)}")
    # Prices move in the watchlist (the simulator trades every tick) and trades reach the tape.
    prices = p.eval_on_selector_all(
        "#watchlist tr td:nth-child(2)", "els => els.map(e => e.textContent)"
    )
    page.until(
        "prev => [...document.querySelectorAll('#watchlist tr td:nth-child(2)')]"
        ".some((e, i) => e.textContent !== prev[i])",
        arg=prices,
    )
    page.at_least("#tape tr")
    assert text(p, "#market-state") in ("open", "pre-open", "closed", "halted")
    # Another symbol from the keyboard: focus its row, press Enter.
    p.focus("#watchlist tr[data-symbol=KCB]")
    p.keyboard.press("Enter")
    page.until("() => document.getElementById('sym-symbol').textContent === 'KCB'")
    assert p.url.endswith("#KCB")


def test_a_limit_order_rests_shows_in_the_book_and_is_cancelled(page: Page) -> None:
    p = page.open("/#SCOM")
    page.sign_in()
    stock = httpx.get(f"{page.server.url}/api/stocks/SCOM/").json()
    price = round(stock["bid"] - 5 * stock["tick_size"], 2)  # under the market: it rests
    page.order("buy", "limit", "300", f"{price:.2f}")
    page.until("() => document.getElementById('order-result').textContent.includes('pending')")
    p.click("#tab-orders")
    row = p.wait_for_selector("#open-orders tr")
    assert "SCOM" in row.inner_text() and f"{price:,.2f}" in row.inner_text()
    # In the book, at its price, marked as the user's own.
    page.until(
        f"() => [...document.querySelectorAll('#book td.bid.mine')].some(e => e.textContent.trim() === {json.dumps(f'{price:,.2f}')})"
    )
    assert text(p, "#wallet-held") != "0.00"
    p.click("#open-orders button[data-cancel]")
    page.until("() => document.querySelectorAll('#open-orders tr').length === 0")
    page.until("() => document.getElementById('wallet-held').textContent === '0.00'")


def test_a_market_buy_changes_cash_holdings_and_summary_without_a_reload(page: Page) -> None:
    p = page.open("/#KCB")
    page.sign_in()
    balance = text(p, "#wallet-balance")
    holdings = text(p, "#sum-holdings")
    page.order("buy", "market", "50")
    page.until("() => document.getElementById('order-result').textContent.includes('executed')")
    page.changed("wallet-balance", balance)
    page.changed("sum-holdings", holdings)
    p.wait_for_selector("#positions tr >> text=KCB")
    p.click("#tab-activity")
    p.wait_for_selector("#activity li >> text=KCB")
    p.click("#tab-performance")
    page.at_least("#metrics dt")
    page.at_least("#equity canvas")


def test_an_invalid_order_shows_the_server_s_words_by_its_field(page: Page) -> None:
    p = page.open("/#SCOM")
    page.sign_in()
    # The browser itself logs every 4xx answer to a fetch; these two are the test's purpose.
    page.expected = ("Failed to load resource: the server responded with a status of 400",)
    token = p.evaluate("localStorage.getItem('marketsrv.token')")
    body = {"symbol": "SCOM", "side": "buy", "order_type": "limit", "quantity": "0",
            "price": "28.50", "time_in_force": "gtc"}  # fmt: skip
    answer = httpx.post(f"{page.server.url}/api/trading/orders/", json=body,
                        headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert answer.status_code == 400
    page.order("buy", "limit", "0", "28.50")
    page.until("() => document.getElementById('err-quantity').textContent !== ''")
    assert text(p, "#err-quantity") == answer.json()["message"]
    assert p.get_attribute("input[name=quantity]", "aria-invalid") == "true"
    # A price outside the day's limits: by the price field, with the limits in the message.
    page.order("buy", "limit", "10", "1.00")
    page.until("() => document.getElementById('err-price').textContent !== ''")
    assert "limit" in text(p, "#err-price")
    assert text(p, "#err-quantity") == ""


def test_the_page_shows_an_outage_reconnects_and_catches_up(page: Page, server: Server) -> None:
    p = page.open("/#SCOM")
    page.sign_in()
    p.wait_for_selector("#link-user[data-state=open]")
    # While the server is down, the browser itself logs each failed attempt to connect.
    page.expected = (
        "WebSocket connection to",
        "Failed to load resource: net::ERR_CONNECTION_REFUSED",
    )
    server.stop()
    p.wait_for_selector("#outage:not([hidden])")
    assert "reconnecting" in text(p, "#outage")
    server.start()  # the same port and database
    p.wait_for_selector("#outage", state="hidden")
    p.wait_for_selector("#link-user[data-state=open]")
    # An order placed elsewhere (another client) reaches the page through the resumed stream.
    token = p.evaluate("localStorage.getItem('marketsrv.token')")
    stock = httpx.get(f"{server.url}/api/stocks/EQTY/").json()
    price = round(stock["bid"] - 5 * stock["tick_size"], 2)
    placed = httpx.post(f"{server.url}/api/trading/orders/", headers={"Authorization": f"Bearer {token}"},
                        json={"symbol": "EQTY", "side": "buy", "quantity": 10, "price": price})  # fmt: skip
    assert placed.status_code == 201
    p.click("#tab-orders")
    p.wait_for_selector(f"#open-orders tr[data-order='{placed.json()['id']}']")
    page.at_least("#book tr", 5)


def test_a_revoked_token_signs_the_page_out(page: Page) -> None:
    p = page.open("/#SCOM")
    page.sign_in()
    p.wait_for_selector("#link-user[data-state=open]")
    token = p.evaluate("localStorage.getItem('marketsrv.token')")
    # A logout elsewhere revokes the token: its socket is closed with 4002, the page signs out.
    out = httpx.post(
        f"{page.server.url}/api/accounts/logout/", headers={"Authorization": f"Bearer {token}"}
    )
    assert out.status_code == 200
    p.wait_for_selector("#sign-in:not([hidden])")
    p.wait_for_selector("#auth[open]")
    assert p.evaluate("localStorage.getItem('marketsrv.token')") is None
    assert text(p, "#wallet-balance") == "—" and p.locator("#open-orders tr").count() == 0


def test_two_traders_message_each_other(browser: Any, server: Server) -> None:
    answer = httpx.post(f"{server.url}/api/accounts/register/",
                        json={"username": "zoe", "password": "zoe-secret"})  # fmt: skip
    assert answer.status_code == 201
    demo = Page(browser, server, viewport={"width": 1400, "height": 1000})
    zoe = Page(browser, server, viewport={"width": 1400, "height": 1000})
    a, b = demo.open("/#SCOM"), zoe.open("/#SCOM")
    demo.sign_in()
    zoe.sign_in("zoe", "zoe-secret")
    for p in (a, b):
        p.click("#tab-chat")
        p.wait_for_selector("#link-chat[data-state=open]")
    a.fill("#chat-new input[name=user]", "zoe")
    a.click("#chat-new button")
    a.wait_for_selector("#chat-send:not([hidden])")
    text = "<i>hello</i> zoe"  # shown as text, never as markup
    a.fill("#chat-text", text)
    a.press("#chat-text", "Enter")
    a.wait_for_selector("#chat-messages li.mine")
    zoe.until("() => document.getElementById('chat-unread').textContent === '1'")
    b.click("#chat-threads button[data-name=demo]")
    zoe.until(
        f"() => [...document.querySelectorAll('#chat-messages li')].some(li => li.textContent.endsWith({json.dumps(text)}))"
    )
    assert b.locator("#chat-messages i").count() == 0
    b.fill("#chat-text", "hi demo")
    b.press("#chat-text", "Enter")
    demo.until(
        "() => [...document.querySelectorAll('#chat-messages li')].some(li => li.textContent.endsWith('hi demo'))"
    )
    demo.close()
    zoe.close()


@pytest.mark.parametrize("width, height, name", [(1400, 1000, "desktop"), (390, 844, "phone")])
def test_screenshots_of_the_main_screen(
    browser: Any, server: Server, width: int, height: int, name: str
) -> None:
    page = Page(browser, server, viewport={"width": width, "height": height}, device_scale_factor=1)
    p = page.open("/#SCOM")
    page.sign_in()
    page.at_least("#book tr", 5)
    page.at_least("#tape tr")
    # Nothing wider than the screen: the layout reflows.
    assert p.evaluate("document.documentElement.scrollWidth") <= width + 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    p.screenshot(path=str(ARTIFACTS / f"screen-{name}.png"), full_page=name == "phone")
    page.close()


def test_the_main_thread_stays_mostly_idle(browser: Any, server: Server) -> None:
    """Every symbol's market data plus one book of 20 levels, at 10 updates a second: the share
    of wall time the page's main thread is busy (Chrome's TaskDuration), recorded for
    docs/performance.md. Measured, not judged: machines differ."""
    page = Page(browser, server, viewport={"width": 1400, "height": 1000})
    p = page.open("/#SCOM")
    page.at_least("#book tr", 5)
    cdp = page.context.new_cdp_session(p)
    cdp.send("Performance.enable")

    def busy() -> tuple[float, float]:
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        return metrics["TaskDuration"], metrics["Timestamp"]

    load = p.evaluate("performance.getEntriesByType('navigation')[0].duration")
    task0, t0 = busy()
    p.wait_for_timeout(10_000)
    task1, t1 = busy()
    share = (task1 - task0) / (t1 - t0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    figures = {"main_thread_busy_share": round(share, 4), "load_ms": round(load, 1)}
    (ARTIFACTS / "page-figures.json").write_text(json.dumps(figures))
    print(f"page: main thread busy {share:.1%} of 10 s; load {load:.0f} ms")
    assert 0 < share < 1 and load > 0
    page.close()
