"""Helpers of `scripts/bench_stream.py` and `scripts/bench_orders.py` (stdlib only).

- `env`: where things live (repo, the read-only `shared/` folder, the scratch folder) and the
  one-time installs in scratch: the node or Python load generators and the Django peer's copy.
- `host`: waiting for a quiet host before a point.
- `servers`: starting and stopping a fresh marketsrv or Django peer for each point, creating
  marketsrv's benchmark users, and a raw WebSocket handshake probe (does `/ws/market/` answer,
  is permessage-deflate accepted).
- `report`: one streaming point's figures from the load generator's JSON, the tables and the
  summary.
- `orders`: the same for the order-entry benchmark (`shared/peers/orders_loadgen.py`'s JSON).
- `options`: the options both scripts share and their checks.
- `runner`: the one-time setup, one point's attempt (fresh server, quiet host, load generator,
  stop), redoing noisy points, recording each point, the last JSON line and the entry point.
"""
