"""The documented path of the store, kept for existing imports; it lives in ``workers.providers.store``."""

from workers.providers.store import SqlStore, Store, store_from_settings

__all__ = ["SqlStore", "Store", "store_from_settings"]
