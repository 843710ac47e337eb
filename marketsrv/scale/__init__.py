"""Scale-out: one primary that matches and keeps the ledger, edges that serve the streams.

    standalone   everything in one process; nothing here is imported (nor the Redis client)
    primary      a standalone server whose hub also publishes every update to the bus (primary.py)
    edge         no simulator, no ledger: the streams from a mirror kept from the bus (edge.py,
                 mirror.py), the REST API (forward.py) and the private sockets (sockets.py)
                 passed to the primary

The bus is Redis (or Valkey) Streams (bus.py, the only module that imports the client); what an
entry holds is in wire.py. How to run it, and what fails how: docs/scaling.md.
"""
