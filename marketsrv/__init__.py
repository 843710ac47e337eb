"""marketsrv: a self-hosted realtime market-data and paper-trading server on one port.

The public surface is the command line (`marketsrv`), the wire protocol (docs/protocol.md) and the
few names below; everything else may change between releases.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
