"""The allowed range of every number a user gives, declared once for the CLI and the nodes.

A range bounds what a machine can do in memory (a billion frames or samples, a 100,000 px video)
and refuses what has no meaning (NaN, infinities, negative counts). The CLI's argument types and
the node widgets' min/max read the same entries, so `cvae walk --frames` and Render Walk's
`frames` accept the same values.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    lo: float
    hi: float
    integer: bool = True
    what: str = ""  # why the upper bound, for the message

    def check(self, value: float | int, name: str) -> float | int:
        """`value` if it is a (whole) number inside the range; a ValueError naming `name` otherwise."""
        problem = self.problem(value)
        if problem:
            raise ValueError(f"{name} {problem}")
        return int(value) if self.integer else float(value)

    def problem(self, value: object) -> str:
        """What is wrong with `value` ('must be ..., got ...'), or '' when it is in range."""
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and self.lo <= value <= self.hi and (not self.integer or value == int(value))
        if ok:
            return ""
        kind = "a whole number" if self.integer else "a number"
        extra = f" ({self.what})" if self.what else ""
        return f"must be {kind} from {_fmt(self.lo)} to {_fmt(self.hi)}{extra}, got {value!r}"


def _fmt(v: float) -> str:
    return f"{int(v):,}" if float(v).is_integer() else f"{v:g}"


RANGES: dict[str, Range] = {
    "count": Range(1, 4096, what="images decoded in one call"),
    "temperature": Range(0.0, 3.0, integer=False),
    "keyframes": Range(1, 4096),
    "frames": Range(1, 100_000, what="over an hour at 24 fps"),
    "hold": Range(0, 10_000),
    "fps": Range(1.0, 120.0, integer=False),
    "quality": Range(0, 100, integer=False),
    "video_size": Range(8, 4096, what="pixels per side"),
    "chunk": Range(1, 1024),
    "batch_size": Range(1, 1024),
    "nrow": Range(1, 1024),
    "samples": Range(1, 256),
    "top": Range(0, 1_000_000),
    "steps": Range(1, 10_000_000),
    "seed": Range(-(2**63), 2**63 - 1),
    "refine": Range(0, 32, what="each pass is one more encode and decode"),
    "cond_weight": Range(-100.0, 100.0, integer=False, what="extrapolating further decodes to noise"),
    # A control's amount: 0 = the lowest value in training, 1 = the highest; beyond extrapolates.
    "control_amount": Range(-1.0, 2.0, integer=False, what="further from the trained range decodes to noise"),
    "anchors": Range(2, 64, what="latents on one explorer map"),
    "map_coordinate": Range(-3.0, 3.0, integer=False, what="the explorer's anchors span -1 to 1"),
    "pins": Range(1, 256, what="pinned keyframes"),
    "lr": Range(1e-9, 1.0, integer=False),
    "loss_weight": Range(0.0, 1e7, integer=False),
    "fraction": Range(0.0, 0.9, integer=False),
    "minutes": Range(0.0, 1e6, integer=False),
    # 0: the first model's weights, 1: the second's; beyond would extrapolate away from both.
    "merge_weight": Range(0.0, 1.0, integer=False),
}


def check(name: str, value: float | int, option: str | None = None) -> float | int:
    """Check `value` against RANGES[name]; the message names `option` (default: the name)."""
    return RANGES[name].check(value, option or name)


def arg_type(bounds: str | Range):
    """An argparse `type=` that parses a number and checks it against a Range (or RANGES[name]);
    argparse's message names the option."""
    r = RANGES[bounds] if isinstance(bounds, str) else bounds

    def parse(text: str) -> float | int:
        try:
            value = int(text) if r.integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if r.integer else 'a number'}") from None
        if r.problem(value):
            raise argparse.ArgumentTypeError(r.problem(value))
        return value

    parse.__name__ = bounds if isinstance(bounds, str) else "number"
    return parse


def widget(name: str) -> dict:
    """min/max for a node widget, from the same range."""
    r = RANGES[name]
    return {"min": int(r.lo) if r.integer else r.lo, "max": int(r.hi) if r.integer else r.hi}
