"""Helpers of `scripts/bench_stream.py` (stdlib only).

- `env`: where things live (repo, the read-only `shared/` folder, the scratch folder) and the
  one-time installs in scratch: the node or Python load generator and the Django peer's copy.
- `host`: waiting for a quiet host before a point.
- `servers`: starting and stopping a fresh marketsrv or Django peer for each point, and a raw
  WebSocket handshake probe (does `/ws/market/` answer, is permessage-deflate accepted).
- `report`: one point's figures from the load generator's JSON, the tables and the summary.
"""
