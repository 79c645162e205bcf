"""The database layer: connections, migrations, storage mode and maintenance."""

from sense311.db.capabilities import has_timescaledb
from sense311.db.connection import connect, make_conninfo, open_pool
from sense311.db.errors import is_transient
from sense311.db.migrate import migrate, storage_mode
from sense311.db.storage import apply_policies, ensure_partitions, maintain, storage_info

__all__ = [
    "apply_policies",
    "connect",
    "ensure_partitions",
    "has_timescaledb",
    "is_transient",
    "maintain",
    "make_conninfo",
    "migrate",
    "open_pool",
    "storage_info",
    "storage_mode",
]
