"""argparse types that range-check numbers, so a value nothing can use is a usage error (exit 2) before
anything starts, instead of a crash or a wrong result later."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from datetime import timedelta


def int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {low} to {high}")
        return value

    return parse


def float_between(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text} is out of range: use {low:g} to {high:g}")
        return value

    return parse


def period(longest_days: int) -> Callable[[str], str]:
    """'30m', '24h', '7d', '2w': more than nothing and at most ``longest_days``. The text is kept (the command
    prints it back); the command parses it again."""

    def parse(text: str) -> str:
        from ..core.accounting import usage
        from ..core.system.errors import ConfigError

        try:
            value = usage.parse_period(text)
        except (ConfigError, OverflowError):
            value = None
        if value is None or not timedelta(0) < value <= timedelta(days=longest_days):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a period of up to {longest_days} days: use a "
                "number and a unit, such as 30m, 24h, 7d or 2w"
            )
        return text

    return parse


def since(longest_days: int) -> Callable[[str], str]:
    """A ``period`` or a past moment: an ISO date or date and time (the framework's `usage --since DATE`)."""
    as_period = period(longest_days)

    def parse(text: str) -> str:
        from ..core.accounting import usage
        from ..core.system.errors import ConfigError

        if usage.is_period(text):
            return as_period(text)
        try:
            ago = usage.parse_since(text)
        except (ConfigError, OverflowError, ValueError):  # the last two: a moment too far back to count from
            raise argparse.ArgumentTypeError(
                f"{text!r} is neither a period (30m, 24h, 7d, 2w) nor a date such as 2026-11-01"
            ) from None
        if ago <= timedelta(0):
            raise argparse.ArgumentTypeError(f"{text!r} is in the future")
        return text

    return parse


def host_address(text: str) -> str:
    """An IP address or a host name, as the settings file's `host` must be."""
    from ..core.system import config

    if not config.is_valid_host(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address or a host name, such as 127.0.0.1")
    return text
