"""Result types of the billing use cases: expected business outcomes as values with stable codes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Stable codes. Callers (pages, CLI, simulator) branch on these, never on messages.
OK = "ok"
NOT_FOUND = "not_found"
NOT_ELIGIBLE = "not_eligible"
OVER_AUTHORITY = "over_authority"
NOT_PERMITTED = "not_permitted"
ALREADY_BILLED = "already_billed"
INVALID_INPUT = "invalid_input"
PERIOD_NOT_STARTED = "period_not_started"
OVER_LIMIT = "over_limit"
CONFLICT = "conflict"          # a concurrent writer committed first; nothing was written, try again


@dataclass(frozen=True)
class Result:
    """Outcome of a use case.

    Attributes
    ----------
    ok : bool
        True when the use case did (or had already done) what was asked.
    code : str
        Stable machine-readable code: ``ok`` or one of the failure codes of this module.
    message : str
        One line for people.
    data : dict
        Use-case specific values (ids created, counts, amounts).
    """

    ok: bool
    code: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]


def success(message: str, **data: Any) -> Result:
    """A successful result."""
    return Result(True, OK, message, dict(data))


def failure(code: str, message: str, **data: Any) -> Result:
    """An expected business failure with a stable code."""
    return Result(False, code, message, dict(data))
