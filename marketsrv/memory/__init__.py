"""The market's memory: its prices, candles, daily bars and recent trades kept in the database,
restored at start, saved about once a second (and a made-up history for a new database)."""

from marketsrv.memory.keeper import SAVE_INTERVAL_S, MarketMemory, MemorySettings

__all__ = ["SAVE_INTERVAL_S", "MarketMemory", "MemorySettings"]
