"""Cron expressions for KFP recurring runs: the five fields users type, the six KFP's scheduler reads.

KFP's ScheduledWorkflow controller parses crons with robfig/cron, whose first field is SECONDS
(``"0 0 3 * * *"`` is 03:00 every day). A five-field expression (``"0 3 * * *"``, minute first, as
in crontab) gets ``0`` seconds put in front; a six-field one is taken as KFP's. Every field is
checked here, before any request, and an error names the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlengine.errors import MlengineError

FIELDS = (  # (name, low, high, names allowed instead of numbers)
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day-of-week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)
DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_ITEM = re.compile(r"^(?P<range>\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/(?P<step>[0-9]+))?$")


class CronError(MlengineError, ValueError):
    """A cron expression KFP's scheduler would not accept; names the field."""


@dataclass(frozen=True)
class KfpCron:
    """A checked schedule: what the user typed and what is sent to KFP."""

    given: str
    kfp: str

    @property
    def translated(self) -> bool:
        return self.given.split() != self.kfp.split()

    def describe(self) -> str:
        """One console line saying what was sent, and why it differs from what was typed."""
        if self.translated:
            return (f'cron "{self.given}" (minute hour day-of-month month day-of-week) is sent to KFP as '
                    f'"{self.kfp}" (KFP\'s scheduler reads a leading seconds field)')
        return f'cron "{self.kfp}" sent to KFP as given (second minute hour day-of-month month day-of-week)'


def _value(text: str, name: str, low: int, high: int, names: tuple[str, ...], expr: str) -> int:
    upper = text.upper()
    if upper in names:
        return names.index(upper) + low
    if not text.isdigit():
        raise CronError(f'cron "{expr}": {name} field: {text!r} is not a number'
                        + (f" or one of {', '.join(names)}" if names else ""))
    value = int(text)
    if name == "day-of-week" and value == 7:  # robfig/cron takes 7 as Sunday too
        return 0
    if not low <= value <= high:
        raise CronError(f'cron "{expr}": {name} field: {value} is out of range {low}-{high}')
    return value


def _check_field(text: str, name: str, low: int, high: int, names: tuple[str, ...], expr: str) -> None:
    for item in text.split(","):
        match = _ITEM.match(item)
        if not match:
            raise CronError(f'cron "{expr}": {name} field: {item!r} is not a value, range (a-b), list (a,b), '
                            "step (*/n) or *")
        part = match.group("range")
        step = match.group("step")
        if step is not None and int(step) == 0:
            raise CronError(f'cron "{expr}": {name} field: step 0 in {item!r}')
        if part == "?":
            if name not in ("day-of-month", "day-of-week"):
                raise CronError(f'cron "{expr}": {name} field: "?" is only allowed for day-of-month or day-of-week')
            continue
        if part == "*":
            continue
        bounds = part.split("-")
        first = _value(bounds[0], name, low, high, names, expr)
        if len(bounds) == 2:
            last = _value(bounds[1], name, low, high, names, expr)
            if last < first:
                raise CronError(f'cron "{expr}": {name} field: range {part!r} runs backwards')


def to_kfp_cron(expression: str) -> KfpCron:
    """Check ``expression`` (5 fields, 6 fields, or an @descriptor) and return what KFP gets."""
    expr = " ".join((expression or "").split())
    if not expr:
        raise CronError('cron "": empty; e.g. "0 3 * * *" for 03:00 every day')
    if expr.startswith("@"):
        if expr.lower() not in DESCRIPTORS:
            raise CronError(f'cron "{expr}": unknown descriptor; expected one of {", ".join(DESCRIPTORS)}')
        return KfpCron(expr, expr.lower())
    fields = expr.split(" ")
    if len(fields) == 5:
        fields = ["0", *fields]
    elif len(fields) != 6:
        raise CronError(f'cron "{expr}": {len(fields)} fields; expected 5 (minute hour day-of-month month '
                        "day-of-week) or KFP's 6 (a leading second)")
    for text, (name, low, high, names) in zip(fields, FIELDS, strict=True):
        _check_field(text, name, low, high, names, expr)
    return KfpCron(expr, " ".join(fields))
