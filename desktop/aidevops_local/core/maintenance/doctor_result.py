"""One doctor check's result and its three statuses: what every doctor_* module returns and doctor.run counts.
Apart from doctor.py so that the checks' modules and the runner share it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "warn" or "fail"
    summary: str
    fix: str = ""  # what to do, when status is not ok
    details: tuple[str, ...] = ()
