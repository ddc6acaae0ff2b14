"""Run units (agent, env id, seed) as Ray tasks: ``metabench evaluate ... --workers N``.

With ``--workers N`` (N > 1) and no address, :func:`run_units_ray` starts a new local Ray instance
with N CPUs (no dashboard; ``address="local"``, so it never joins a cluster that ``ray start`` left
behind) and runs each unit as a Ray task asking for one CPU, so N units run at once; with
``--ray-address ADDR`` it joins that cluster instead (``"auto"``, ``"host:6379"``,
``"ray://host:10001"``; a cluster started with token authentication needs ``RAY_AUTH_MODE=token`` in
the environment). Ray is imported only here, so ``--workers 1`` runs without it.

Ray's start-up costs seconds (measured here: 4 s on an idle 2-core machine, 10-15 s on a loaded
one), so Ray pays off only when units take longer than that. Progress bars are off on Ray workers
(they would interleave); the driver prints each record's path as its unit finishes, on stdout, and a
worker's own output (an agent's prints, library warnings) goes to stderr, so that stdout holds only
those lines.

A unit travels whole, with its ``isolate`` flag (``--isolate``): an isolated unit starts its env
process on the worker that runs it (:mod:`metabench.isolation`), so isolation holds on a cluster too.

Each unit runs :func:`metabench.harness.run_unit` on a worker, which writes the unit's record itself
(so the output directory should be on a filesystem the workers share; paths are made absolute before
they are sent). The worker also returns the record, and the driver writes it where the worker's copy
is not visible (a cluster without a shared filesystem). A unit that fails, even by its worker dying,
ends as an error record and never stops the others: the driver waits for every unit.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from metabench.harness import (
    Unit,
    UnitResult,
    UsageError,
    error_record,
    result_of,
    run_unit,
    write_unit_record,
)
from metabench.records import dumps


def _stdout_to_stderr() -> None:
    """Send this process's stdout (Python's and C's: file descriptor 1) to its stderr.

    Ray shows a worker's stdout on the driver's stdout, where it would be mixed into the ``wrote ...``
    lines a script reads; whatever an agent or a library prints on a worker belongs with the logs.
    """
    try:
        sys.stdout.flush()
        os.dup2(sys.stderr.fileno(), 1)
    except (OSError, ValueError, AttributeError):  # no real file descriptors: nothing to redirect
        pass


def _remote_unit(unit: Unit) -> UnitResult:
    """What a Ray worker runs: the unit, its record written and returned (stdout goes to stderr)."""
    _stdout_to_stderr()
    return run_unit(unit, return_record=True)


def run_units_ray(
    units: Sequence[Unit],
    *,
    workers: int,
    address: str | None = None,
    quiet: bool = False,
    on_result: Callable[[UnitResult], None] | None = None,
) -> list[UnitResult]:
    """Run ``units`` as Ray tasks and return their results in the order of ``units``.

    Starts a local Ray instance with ``workers`` CPUs (or joins ``address``) unless Ray is already
    initialised in this process, and shuts down only what it started. ``on_result`` is called in the
    driver as each unit finishes.
    """
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        common = {"include_dashboard": False, "log_to_driver": not quiet, "logging_level": logging.WARNING}
        if address:
            _check_reachable(address)
            try:
                ray.init(address=address, **common)
            except (ConnectionError, ValueError) as exc:
                raise UsageError(
                    f"cannot join the Ray cluster at {address!r}: {exc} (is it running, and does this "
                    "process have its auth token, e.g. RAY_AUTH_MODE=token?)"
                ) from exc
        else:
            # "local": always a new instance, never a cluster found through /tmp/ray/ray_current_cluster
            ray.init(address="local", num_cpus=int(workers), **common)
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_remote_unit)
        refs = [remote.remote(u) for u in units]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[UnitResult | None] = [None] * len(units)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = index[done[0]]
            results[i] = _collect(ray, done[0], units[i])
            if on_result is not None:
                on_result(results[i])
        return [r for r in results if r is not None]
    finally:
        if started_here:
            ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail fast on a ``host:port`` (or ``ray://host:port``) nothing listens at: Ray itself retries
    such an address for minutes. ``"auto"`` and other forms are left to Ray."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise UsageError(
            f"cannot join the Ray cluster at {address!r}: nothing answers there ({exc})"
        ) from exc


def _collect(ray: object, ref: object, unit: Unit) -> UnitResult:
    """The unit's result; an error record written by the driver if the task itself failed."""
    try:
        result: UnitResult = ray.get(ref)  # type: ignore[attr-defined]
    except Exception as exc:  # the worker died, or the task could not be run at all
        record = error_record(unit, exc, traceback.format_exc())
        path, record = write_unit_record(unit, record)
        return result_of(unit, record, path=path)
    path = Path(result.path)
    if result.record is not None and (not path.is_file() or path.read_text() != dumps(result.record)):
        # the worker's filesystem is not ours: write it here, by the same rules
        written, _ = write_unit_record(unit, result.record)
        result.path = str(written)
    result.record = None
    return result
