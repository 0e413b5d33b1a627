"""One BLAS thread for the small dense problems of the align step (logistic-regression fits, Sinkhorn).

Why: the label filter's cross-validation fits ~37 small logistic regressions per round (n ≈ 2,000 rows, d = 384)
through NumPy/SciPy's OpenBLAS. With its default of one thread per core, OpenBLAS's worker threads spin while they
wait for work; when another process holds a core (a llama.cpp server, a second job, a loaded CI machine) the
spinning threads take the time slices the main thread needs and each BLAS call waits for a descheduled worker.
Measured on 2 cores with one core busy (``evals/RESULTS.md`` §9, ``python evals/scripts/bench_run.py``): one
align call at 6 labels × 2,000 real rows took 96.5 s with the default threads and 2.5 s with one, with
identical selections.
Problems this small gain little from a second thread even on an idle machine, so the limit is unconditional.

The limit is scoped (``threadpoolctl``, the library scikit-learn uses for the same job): code around synalign keeps
its own thread settings. Torch's OpenMP pool spins the same way: :func:`single_thread` also runs torch on one
intra-op thread, for the run's align step as a whole (its KMM solves and divergences are small per label: with a
busy core, KMM of a 768-row pool took 0.73 s on 2 torch threads and 0.14 s on 1, the noise floor 1.35 s vs 0.21 s).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from threadpoolctl import threadpool_limits

__all__ = ["single_blas_thread", "single_thread"]

P = ParamSpec("P")
R = TypeVar("R")


def single_blas_thread(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator: ``fn`` runs with NumPy/SciPy BLAS limited to one thread; the previous limits come back after."""

    @functools.wraps(fn)
    def limited(*args: P.args, **kwargs: P.kwargs) -> R:
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return limited


def single_thread(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator: ``fn`` runs with BLAS and torch's intra-op pool on one thread each; both are restored after.

    ``torch.set_num_threads`` is process-wide, so use it only where nothing else runs torch at the same time
    (the graph runs one node at a time).
    """

    blas_limited = single_blas_thread(fn)

    @functools.wraps(fn)
    def limited(*args: P.args, **kwargs: P.kwargs) -> R:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return blas_limited(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return limited
