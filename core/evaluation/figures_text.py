"""Numbers as report text: values, intervals and the partial-interval mark, one spelling everywhere."""
from __future__ import annotations

from typing import Optional


def fmt(value: Optional[float], digits: int = 3) -> str:
    return "undefined" if value is None else f"{value:.{digits}f}"


PARTIAL_MARK = "*"
PARTIAL_NOTE = ("* interval defined by fewer than 90% of the bootstrap resamples (the others lacked a "
                "positive or a negative): read it with care; counts in the JSON (ci_resamples)")


def fmt_ci(figure: Optional[dict], digits: int = 3, sep: str = " ") -> str:
    """'0.912 [0.850, 0.960]', or the value alone without an interval, 'undefined' without a value.
    An interval most resamples could not define ends with PARTIAL_MARK."""
    if not figure or figure.get("value") is None:
        return "undefined"
    ci = figure.get("ci")
    text = fmt(figure["value"], digits)
    mark = PARTIAL_MARK if figure.get("ci_partial") else ""
    return f"{text}{sep}[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]{mark}" if ci else text
