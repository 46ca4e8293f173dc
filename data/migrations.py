"""Schema versions and the in-place upgrades between them.

``SCHEMA_VERSION`` is the version ``schema.sql`` creates. To change the schema: edit ``schema.sql``,
bump ``SCHEMA_VERSION``, and add to ``UPGRADES`` the SQL that takes a database of the previous
version to the new one (``UPGRADES[n]`` upgrades version n to n + 1). A version with no path to the
current one is refused with a clear message by ``data.db.connect``.
"""
from __future__ import annotations

SCHEMA_VERSION = 2

UPGRADES: dict[int, list[str]] = {
    # 1 -> 2: indexes on the customer of invoices and payments (the agent desk's lookups)
    1: ["CREATE INDEX IF NOT EXISTS invoices_customer ON invoices (customer_id)",
        "CREATE INDEX IF NOT EXISTS payments_customer ON payments (customer_id)"],
}


def steps_from(version: int) -> list[str] | None:
    """The SQL statements that upgrade ``version`` to ``SCHEMA_VERSION``, or None when impossible."""
    steps: list[str] = []
    for v in range(version, SCHEMA_VERSION):
        if v not in UPGRADES:
            return None
        steps.extend(UPGRADES[v])
    return steps
