"""Parallel map over contiguous chunks with joblib, a configurable backend and a progress bar.

The backend is configuration, not code: ``backend="loky"`` (processes, the default),
``"threading"``, or any backend registered with joblib, such as ``"ray"`` (after
``ray.util.joblib.register_ray()``) or ``"dask"`` (with a ``dask.distributed.Client``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["chunk_bounds", "parallel_chunks"]


def chunk_bounds(n_items: int, n_jobs: int, *, per_job: int = 4) -> list[tuple[int, int]]:
    """Contiguous ``(start, stop)`` slices covering ``range(n_items)``.

    One chunk when running serially (warm starts run the whole way); otherwise
    ``per_job`` chunks per worker, so a slow chunk does not hold the others back.
    """
    n_chunks = 1 if n_jobs == 1 else max(1, min(n_items, per_job * _workers(n_jobs)))
    edges = np.linspace(0, n_items, n_chunks + 1).astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]


def _workers(n_jobs: int) -> int:
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
        Arguments of each call.
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
