"""
Side-by-side timing harness for the benchmarks
==============================================

Times several runners of the same work in one process, interleaved so that
the noise of a shared machine (other jobs, CPU frequency, a neighbour's
cache traffic) falls on all of them alike:

* each round runs every runner once, for ``calls_per_round`` calls, one
  after the other (A B C, then the next round B C A, then C A B: the order
  rotates so that no runner always goes first or last);
* ``gc.collect()`` before each run, and a short warm-up of every runner
  before the first round;
* each runner's time per call is recorded per round, and so is its ratio to
  the baseline runner *of the same round*, so a slow round slows both sides
  of its ratio.

It prints, per runner, the median microseconds per call and the median and
min-max of the per-round ratios, and returns the same figures as a dict
(JSON-serializable)::

    from harness import compare
    figures = compare({"bare": bare, "wrapped": wrapped}, calls_per_round=2000, baseline="bare")
    figures["runners"]["wrapped"]["ratio"]["median"]

:func:`compare` takes plain callables; :func:`compare_async` (and the
coroutine :func:`acompare`) take coroutine functions and runs them all on one
event loop. :func:`per_round` derives a figure from each round's times (an
added cost over a reference, say), :func:`calls_for` sizes
``calls_per_round`` from a time budget.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

__all__ = ["MIN_ROUNDS", "acalls_for", "acompare", "calls_for", "compare", "compare_async", "per_round", "spread"]

MIN_ROUNDS = 7

Runner = Callable[[], None]
AsyncRunner = Callable[[], Awaitable[None]]


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of ``values``."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _orders(names: list[str], rounds: int) -> list[list[str]]:
    """Round ``r`` starts with runner ``r mod n``: A B C, B C A, C A B, ..."""
    count = len(names)
    return [names[r % count :] + names[: r % count] for r in range(rounds)]


def _check(runners: Mapping[str, Any], rounds: int, calls_per_round: int, baseline: str) -> None:
    if baseline not in runners:
        raise ValueError(f"baseline {baseline!r} is not one of the runners {sorted(runners)}")
    if rounds < MIN_ROUNDS:
        raise ValueError(f"rounds must be at least {MIN_ROUNDS}, not {rounds}")
    if calls_per_round < 1:
        raise ValueError("calls_per_round must be at least 1")


def _warmup_calls(calls_per_round: int, warmup: int | None) -> int:
    return max(1, min(calls_per_round // 10, 200)) if warmup is None else warmup


def _figures(
    times: dict[str, list[float]], baseline: str, rounds: int, calls_per_round: int, title: str | None
) -> dict[str, Any]:
    base = times[baseline]
    runners: dict[str, Any] = {}
    for name, per_round in times.items():
        ratios = [value / reference for value, reference in zip(per_round, base, strict=True)]
        runners[name] = {
            "us_per_call": spread(per_round),
            "ratio": spread(ratios),
            "rounds_us": per_round,
            "rounds_ratio": ratios,
        }
    return {
        "title": title,
        "baseline": baseline,
        "rounds": len(base),
        "rounds_asked": rounds,
        "calls_per_round": calls_per_round,
        "runners": runners,
    }


def report(figures: dict[str, Any], *, file: Any = None) -> None:
    """Print ``figures`` as returned by :func:`compare`: one line per runner."""
    out = file or sys.stdout
    title = figures.get("title")
    head = f"{title}: " if title else ""
    print(
        f"{head}{figures['rounds']} rounds x {figures['calls_per_round']} calls, baseline {figures['baseline']!r}",
        file=out,
    )
    width = max(len(name) for name in figures["runners"])
    print(f"  {'runner':<{width}}  {'us/call':>10}  {'ratio':>7}  {'min-max':>15}", file=out)
    for name, row in figures["runners"].items():
        ratio = row["ratio"]
        print(
            f"  {name:<{width}}  {row['us_per_call']['median']:10.2f}  {ratio['median']:6.3f}x"
            f"  {ratio['min']:6.3f}-{ratio['max']:.3f}x",
            file=out,
        )


def compare(
    runners: Mapping[str, Runner],
    *,
    rounds: int = MIN_ROUNDS,
    calls_per_round: int,
    baseline: str,
    warmup: int | None = None,
    max_seconds: float | None = None,
    title: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Time ``runners`` side by side; see the module docstring.

    :param runners: name to a callable doing one call of the work.
    :param rounds: rounds to run, at least :data:`MIN_ROUNDS`.
    :param calls_per_round: calls of each runner per round.
    :param baseline: the runner the ratios are taken against.
    :param warmup: calls of each runner before the first round (default: a
        tenth of a round, at most 200).
    :param max_seconds: once :data:`MIN_ROUNDS` rounds are done, stop early
        when this much time has passed.
    """
    _check(runners, rounds, calls_per_round, baseline)
    names = list(runners)
    loop = range(calls_per_round)
    for name in names:
        call = runners[name]
        for _ in range(_warmup_calls(calls_per_round, warmup)):
            call()
    times: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter
    started = clock()
    for index, order in enumerate(_orders(names, rounds)):
        if max_seconds is not None and index >= MIN_ROUNDS and clock() - started > max_seconds:
            break
        for name in order:
            call = runners[name]
            gc.collect()
            start = clock()
            for _ in loop:
                call()
            times[name].append((clock() - start) / calls_per_round * 1e6)
    figures = _figures(times, baseline, rounds, calls_per_round, title)
    if not quiet:
        report(figures)
    return figures


async def acompare(
    runners: Mapping[str, AsyncRunner],
    *,
    rounds: int = MIN_ROUNDS,
    calls_per_round: int,
    baseline: str,
    warmup: int | None = None,
    max_seconds: float | None = None,
    title: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """:func:`compare` for coroutine functions, awaited on the running loop."""
    _check(runners, rounds, calls_per_round, baseline)
    names = list(runners)
    loop = range(calls_per_round)
    for name in names:
        call = runners[name]
        for _ in range(_warmup_calls(calls_per_round, warmup)):
            await call()
    times: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter
    started = clock()
    for index, order in enumerate(_orders(names, rounds)):
        if max_seconds is not None and index >= MIN_ROUNDS and clock() - started > max_seconds:
            break
        for name in order:
            call = runners[name]
            gc.collect()
            start = clock()
            for _ in loop:
                await call()
            times[name].append((clock() - start) / calls_per_round * 1e6)
    figures = _figures(times, baseline, rounds, calls_per_round, title)
    if not quiet:
        report(figures)
    return figures


def compare_async(runners: Mapping[str, AsyncRunner], **options: Any) -> dict[str, Any]:
    """:func:`acompare` on a new event loop (one loop for all runners)."""
    return asyncio.run(acompare(runners, **options))


def per_round(figures: dict[str, Any], derive: Callable[[dict[str, float]], float]) -> dict[str, Any]:
    """A figure derived from each round's microseconds per call, with its spread.

    ``derive`` gets one round's ``{runner: us_per_call}``; for example the
    added cost of ``wrapped`` over ``bare`` in units of ``reference``::

        per_round(figures, lambda t: (t["wrapped"] - t["bare"]) / t["reference"])
    """
    runners = figures["runners"]
    values = [
        derive({name: row["rounds_us"][index] for name, row in runners.items()}) for index in range(figures["rounds"])
    ]
    return {**spread(values), "rounds": values}


def calls_for(runners: Mapping[str, Runner], seconds: float, *, low: int = 1, high: int = 100_000) -> int:
    """Calls per round such that the slowest runner takes about ``seconds`` per run."""
    slowest = 0.0
    for call in runners.values():
        count, start = 0, time.perf_counter()
        while count < 3 or (time.perf_counter() - start < 0.05 and count < high):
            call()
            count += 1
        slowest = max(slowest, (time.perf_counter() - start) / count)
    return max(low, min(high, int(seconds / slowest) if slowest > 0 else high))


async def acalls_for(runners: Mapping[str, AsyncRunner], seconds: float, *, low: int = 1, high: int = 100_000) -> int:
    """:func:`calls_for` for coroutine functions."""
    slowest = 0.0
    for call in runners.values():
        count, start = 0, time.perf_counter()
        while count < 3 or (time.perf_counter() - start < 0.05 and count < high):
            await call()
            count += 1
        slowest = max(slowest, (time.perf_counter() - start) / count)
    return max(low, min(high, int(seconds / slowest) if slowest > 0 else high))
