"""Parallel map over contiguous chunks with joblib, a configurable backend and a progress bar.

The backend is configuration, not code: ``backend="loky"`` (processes, the default),
``"threading"``, or any backend registered with joblib, such as ``"ray"`` (after
``ray.util.joblib.register_ray()``) or ``"dask"`` (with a ``dask.distributed.Client``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["CHUNK_SIZE", "chunk_bounds", "parallel_chunks", "workers"]


CHUNK_SIZE = 128
"""Items per chunk of :func:`chunk_bounds`: each chunk sets up its own solver and
warm-starts along its items, so a cold start costs one chunk in this many items."""


def chunk_bounds(n_items: int, n_jobs: int = 1, *, size: int = CHUNK_SIZE
                 ) -> list[tuple[int, int]]:
    """Contiguous ``(start, stop)`` slices covering ``range(n_items)``, ``size`` items each
    (the last one shorter).

    The slices deliberately do not depend on ``n_jobs`` (taken for the callers' sake): a
    chunk's results depend on where it starts, as its solver warm-starts along it, so the
    same slices in every run give the same results serially and on any number of workers
    with any backend.
    """
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}.")
    return [(a, min(a + size, n_items)) for a in range(0, n_items, size)]


def workers(n_jobs: int) -> int:
    """Workers ``n_jobs`` stands for (-1 and below: every core)."""
    return (os.cpu_count() or 1) if n_jobs < 0 else n_jobs


def parallel_chunks(
    func: Callable[..., Any],
    tasks: Sequence[tuple],
    *,
    n_jobs: int = 1,
    backend: str | None = None,
    progress: bool = False,
    description: str = "working",
) -> list[Any]:
    """``[func(*task) for task in tasks]``, in order, on ``n_jobs`` workers.

    Parameters
    ----------
    func : callable
        Must be importable at module level for process backends.
    tasks : sequence of tuple
        Arguments of each call; array arguments are passed as C-ordered copies on every
        backend, serial included, so that the results do not depend on the backend.
    n_jobs : int
        Workers; 1 runs in this process, -1 uses every core.
    backend : str, optional
        A joblib backend name (see the module docstring); joblib's default when None.
    progress : bool
        Show a rich progress bar over tasks.
    """
    bar = Progress(TextColumn("{task.description}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                   disable=not progress, transient=True)
    # Every call gets its arrays as a process worker would: fresh C-ordered copies. NumPy
    # sums along a contiguous axis pairwise and along a strided one in sequence, so a view
    # (an F-ordered slice, here) and the C-ordered copy a worker unpickles would give
    # results that differ in the last bits.
    tasks = [tuple(np.array(a, order="C") if isinstance(a, np.ndarray) else a for a in args)
             for args in tasks]
    results: list[Any] = []
    with bar:
        task_id = bar.add_task(description, total=len(tasks))
        if n_jobs == 1:
            for args in tasks:
                results.append(func(*args))
                bar.advance(task_id)
            return results
        from joblib import Parallel, delayed, parallel_config

        with parallel_config(backend=backend) if backend else contextlib.nullcontext():
            for out in Parallel(n_jobs=n_jobs, return_as="generator")(
                delayed(func)(*args) for args in tasks
            ):
                results.append(out)
                bar.advance(task_id)
    return results
