"""The live market: instruments, order books with their statistics, and the simulator that trades in them."""

from marketsrv.market.instruments import Instrument, UniverseError, load_universe
from marketsrv.market.simulator import Simulator
from marketsrv.market.state import Market, UnknownSymbol

__all__ = ["Instrument", "Market", "Simulator", "UniverseError", "UnknownSymbol", "load_universe"]
