"""The schema, as an ordered list of migrations tracked by `PRAGMA user_version`.

Each migration runs once, in its own transaction, and bumps `user_version` to its position in the
list; a database newer than this code is refused rather than guessed at. Money columns end in
`_cents` (integers); an order also keeps its price in the book (`book_price_cents`: the limit, or
a market order's collar) for reloading books.
"""

from __future__ import annotations

import sqlite3

from storage.errors import SchemaTooNew, StorageError

MIGRATIONS: list[str] = [
    # 1: accounts, the cash ledger, orders, fills, holdings, and the outbox.
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE tokens (
        token_hash BLOB PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    ) WITHOUT ROWID;
    -- The wallet's balance is the sum of its ledger; held cash is what open buy orders reserve.
    CREATE TABLE wallets (
        user_id INTEGER PRIMARY KEY REFERENCES users(id),
        balance_cents INTEGER NOT NULL DEFAULT 0 CHECK (balance_cents >= 0),
        held_cents INTEGER NOT NULL DEFAULT 0 CHECK (held_cents >= 0),
        CHECK (held_cents <= balance_cents)
    );
    CREATE TABLE ledger (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        kind TEXT NOT NULL CHECK (kind IN ('deposit', 'withdrawal', 'buy_fill', 'sell_fill')),
        amount_cents INTEGER NOT NULL,
        order_id INTEGER REFERENCES orders(id),
        fill_id INTEGER REFERENCES fills(id),
        created_at INTEGER NOT NULL
    );
    CREATE INDEX ledger_user ON ledger(user_id, id);
    CREATE TABLE orders (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        client_order_id TEXT,
        request_hash TEXT,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
        order_type TEXT NOT NULL CHECK (order_type IN ('market', 'limit')),
        time_in_force TEXT NOT NULL CHECK (time_in_force IN ('gtc', 'ioc', 'fok')),
        price_cents INTEGER,
        price_ticks INTEGER,
        quantity INTEGER NOT NULL CHECK (quantity > 0),
        filled_quantity INTEGER NOT NULL DEFAULT 0,
        filled_cents INTEGER NOT NULL DEFAULT 0,
        held_cents INTEGER NOT NULL DEFAULT 0 CHECK (held_cents >= 0),
        held_shares INTEGER NOT NULL DEFAULT 0 CHECK (held_shares >= 0),
        status TEXT NOT NULL CHECK (status IN
            ('pending', 'partially_filled', 'executed', 'cancelled', 'failed')),
        note TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        CHECK (filled_quantity BETWEEN 0 AND quantity),
        UNIQUE (user_id, client_order_id)
    );
    CREATE INDEX orders_user ON orders(user_id, id);
    CREATE INDEX orders_open ON orders(status) WHERE status IN ('pending', 'partially_filled');
    CREATE TABLE fills (
        id INTEGER PRIMARY KEY,
        order_id INTEGER NOT NULL REFERENCES orders(id),
        user_id INTEGER NOT NULL REFERENCES users(id),
        symbol TEXT NOT NULL,
        side TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
        price_cents INTEGER NOT NULL CHECK (price_cents > 0),
        quantity INTEGER NOT NULL CHECK (quantity > 0),
        realized_pnl_cents INTEGER NOT NULL DEFAULT 0,
        trade_id INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX fills_user ON fills(user_id, id);
    CREATE INDEX fills_order ON fills(order_id);
    -- Average cost is cost_cents / quantity, kept exact as the total it divides.
    CREATE TABLE holdings (
        user_id INTEGER NOT NULL REFERENCES users(id),
        symbol TEXT NOT NULL,
        quantity INTEGER NOT NULL DEFAULT 0 CHECK (quantity >= 0),
        held_quantity INTEGER NOT NULL DEFAULT 0 CHECK (held_quantity >= 0),
        cost_cents INTEGER NOT NULL DEFAULT 0 CHECK (cost_cents >= 0),
        realized_pnl_cents INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id, symbol),
        CHECK (held_quantity <= quantity)
    ) WITHOUT ROWID;
    -- Every state change writes a row here in its own transaction; a relay publishes them.
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        topic TEXT NOT NULL,
        user_id INTEGER,
        payload TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        published_at INTEGER
    );
    CREATE INDEX outbox_unpublished ON outbox(id) WHERE published_at IS NULL;
    """,
    # 2: the market's memory (prices, candles, daily bars, recent trades), the admin role, and
    # book prices in cents (the tick now depends on the price, so the book counts in cents).
    """
    ALTER TABLE orders RENAME COLUMN price_ticks TO book_price_cents;
    UPDATE orders SET book_price_cents = price_cents;
    ALTER TABLE users ADD COLUMN is_admin INTEGER NOT NULL DEFAULT 0;
    -- One row per symbol: the state a restart resumes from (saved about once a second).
    CREATE TABLE market_symbols (
        symbol TEXT PRIMARY KEY,
        day TEXT NOT NULL,
        saved_at INTEGER NOT NULL,
        previous_close INTEGER NOT NULL,
        open INTEGER,
        high INTEGER,
        low INTEGER,
        last INTEGER,
        volume INTEGER NOT NULL,
        turnover INTEGER NOT NULL,
        trades INTEGER NOT NULL,
        last_trade_ms INTEGER,
        last_trade_id INTEGER NOT NULL,
        fair REAL,
        halted TEXT
    ) WITHOUT ROWID;
    CREATE TABLE candles_1m (
        symbol TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        open INTEGER NOT NULL,
        high INTEGER NOT NULL,
        low INTEGER NOT NULL,
        close INTEGER NOT NULL,
        volume INTEGER NOT NULL,
        trades INTEGER NOT NULL,
        PRIMARY KEY (symbol, start_ms)
    ) WITHOUT ROWID;
    CREATE TABLE daily_bars (
        symbol TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        open INTEGER NOT NULL,
        high INTEGER NOT NULL,
        low INTEGER NOT NULL,
        close INTEGER NOT NULL,
        volume INTEGER NOT NULL,
        trades INTEGER NOT NULL,
        PRIMARY KEY (symbol, start_ms)
    ) WITHOUT ROWID;
    CREATE TABLE market_trades (
        symbol TEXT NOT NULL,
        trade_id INTEGER NOT NULL,
        price INTEGER NOT NULL,
        quantity INTEGER NOT NULL,
        aggressor TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (symbol, trade_id)
    ) WITHOUT ROWID;
    CREATE TABLE market_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    -- A restart numbers new trades after the last one any user's fill recorded.
    CREATE INDEX fills_symbol_trade ON fills(symbol, trade_id);
    """,
    # 3: each user's events numbered without gaps, for the private stream's resume: the number
    # lives on the user (the outbox's rows are pruned; the numbering must not start again).
    """
    ALTER TABLE outbox ADD COLUMN user_seq INTEGER;
    UPDATE outbox SET user_seq = r.n FROM (
        SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY id) AS n FROM outbox
    ) AS r WHERE r.id = outbox.id;
    CREATE UNIQUE INDEX outbox_user_seq ON outbox(user_id, user_seq);
    CREATE INDEX outbox_created ON outbox(created_at);
    ALTER TABLE users ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 0;
    UPDATE users SET event_seq = coalesce(
        (SELECT max(user_seq) FROM outbox WHERE outbox.user_id = users.id), 0
    );
    """,
    # 4: the account's value over time: equity at each day's close and intraday, with the net
    # cash flow (deposits - withdrawals) since the previous row, so returns can leave it out.
    """
    CREATE TABLE equity_history (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        at INTEGER NOT NULL,
        equity_cents INTEGER NOT NULL,
        cash_cents INTEGER NOT NULL,
        flow_cents INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('intraday', 'close', 'flow'))
    );
    CREATE INDEX equity_user_at ON equity_history(user_id, at);
    -- A reset account's orders, fills and ledger rows move to this user, so their ids are
    -- never given again (SQLite reuses the highest rowid once it is deleted).
    INSERT INTO users (id, username, password_hash, created_at)
        VALUES (0, '~reset-archive', '!', 0);
    -- A paper account set back to a chosen cash amount by its owner (its history is cleared).
    CREATE TABLE account_resets (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        cash_cents INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX ledger_user_created ON ledger(user_id, created_at);
    """,
    # 5: one outbox row per user and write, not per event (each row costs its index entries on
    # the order path), holding each event's facts as a line of JSON `[type, facts]` (the
    # rows written before keep the event's JSON as its facts); the unused `key` and
    # `published_at` go.
    """
    CREATE TABLE outbox_rows (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        events BLOB NOT NULL,
        created_at INTEGER NOT NULL
    );
    INSERT INTO outbox_rows (id, user_id, first_seq, last_seq, events, created_at)
        SELECT id, user_id, user_seq, user_seq,
            CAST('["' || topic || '",' || payload || ']' AS BLOB), created_at
        FROM outbox WHERE user_id IS NOT NULL AND user_seq IS NOT NULL;
    DROP TABLE outbox;
    ALTER TABLE outbox_rows RENAME TO outbox;
    CREATE UNIQUE INDEX outbox_user_seq ON outbox(user_id, last_seq);
    CREATE INDEX outbox_created ON outbox(created_at);
    """,
    # 6: direct messages between users: a thread per pair (user_low < user_high), its
    # messages, how far each user has read each thread, and who blocked whom.
    """
    CREATE TABLE chat_threads (
        id INTEGER PRIMARY KEY,
        user_low INTEGER NOT NULL REFERENCES users(id),
        user_high INTEGER NOT NULL REFERENCES users(id),
        created_at INTEGER NOT NULL,
        UNIQUE (user_low, user_high),
        CHECK (user_low < user_high)
    );
    CREATE TABLE chat_messages (
        id INTEGER PRIMARY KEY,
        thread_id INTEGER NOT NULL REFERENCES chat_threads(id),
        sender_id INTEGER NOT NULL REFERENCES users(id),
        receiver_id INTEGER NOT NULL REFERENCES users(id),
        text TEXT NOT NULL,
        data TEXT,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX chat_threads_high ON chat_threads(user_high);
    CREATE INDEX chat_messages_thread ON chat_messages(thread_id, id);
    CREATE INDEX chat_messages_receiver ON chat_messages(receiver_id, thread_id, id);
    CREATE TABLE chat_reads (
        user_id INTEGER NOT NULL REFERENCES users(id),
        thread_id INTEGER NOT NULL REFERENCES chat_threads(id),
        last_read_id INTEGER NOT NULL,
        PRIMARY KEY (user_id, thread_id)
    ) WITHOUT ROWID;
    CREATE TABLE chat_blocks (
        user_id INTEGER NOT NULL REFERENCES users(id),
        blocked_id INTEGER NOT NULL REFERENCES users(id),
        created_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, blocked_id)
    ) WITHOUT ROWID;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to `SCHEMA_VERSION`; return the version found before."""
    found: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if found < 0:
        raise StorageError(f"its schema version is {found}: it is not a marketsrv database")
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"it was written by a newer marketsrv (schema version {found}; this one knows up to"
            f" {SCHEMA_VERSION}): run that newer marketsrv, or restore a backup made before it"
        )
    for version in range(found + 1, SCHEMA_VERSION + 1):
        # executescript commits first and runs outside any transaction, so wrap it in one.
        script = MIGRATIONS[version - 1]
        conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")
    return found
