"""Refuse what will not fit, before allocating: peak-memory estimates from the shapes and
one refusal (docs/robustness.md, "Memory").

A job whose estimated peak memory is above the budget raises :class:`MemoryBudgetError` (a
``MemoryError``) with one line naming the size, the budget and what to do, before any large
array exists; the ``lkr`` command turns it into that line on stderr and exit status 2.

The budget is :func:`budget`: ``LKR_MAX_BYTES`` when set, else half of the memory
available now (:func:`lkr._env.default_budget`); for CuPy arrays half of the device's free
memory. A ``max_bytes`` argument, where a function has one, overrides both.

The estimators below count 8-byte doubles per array that is alive at the peak, measured
with ``tracemalloc`` (which sees NumPy's allocations) on P = 200 ... 800 and rounded up; a
test checks that each estimate bounds the measured peak. They are upper bounds of the
dominant terms, not exact accounting: an estimate within a factor of about two of the truth
is the aim, so that a refused job really would not have fitted and an accepted one does.
"""
from __future__ import annotations

from . import _env
from ._arrays import _cupy

__all__ = ["MemoryBudgetError", "budget", "format_bytes", "check", "largest", "DOUBLE", "nngp_bytes",
           "fc_theory_bytes", "local_theory_bytes", "stored_kernel_bytes", "predict_bytes",
           "net_bytes", "collapsed_bytes", "task_bytes", "check_theory_sizes", "OVERHEAD"]

#: bytes of one float64
DOUBLE = 8

#: jobs below this size (64 MiB) are not checked against the default budget
_SMALL = 64 * 1024**2

#: what a theory's fit or prediction allocates besides its P-sized arrays (tile buffers,
#: LAPACK workspace of small problems, Python objects): measured under 4 MiB
OVERHEAD = 8 * 1024**2


class MemoryBudgetError(MemoryError):
    """A job refused before allocating: its estimated peak memory is above the budget."""


def budget(max_bytes=None, xp=None) -> int:
    """The memory budget in bytes: ``max_bytes`` when given, else ``LKR_MAX_BYTES`` when set,
    else half of the available host memory (for CuPy, ``xp`` the cupy module: half of the
    device's free memory)."""
    if max_bytes is not None:
        return int(max_bytes)
    cp = _cupy()
    if xp is not None and cp is not None and xp is cp and _env._raw("LKR_MAX_BYTES") is None:
        try:
            return int(cp.cuda.runtime.memGetInfo()[0]) // 2
        except Exception:  # pragma: no cover - a broken driver: fall back to the host's
            pass
    return _env.default_budget()


def format_bytes(n) -> str:
    """``n`` bytes in binary units with three significant digits: ``"298 GiB"``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" or n >= 100 else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"  # pragma: no cover


def largest(bytes_of, limit: int, upto: int) -> int:
    """The largest n in [0, upto] with ``bytes_of(n) <= limit`` (``bytes_of`` increasing)."""
    lo, hi = 0, int(upto)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if bytes_of(mid) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


def check(need, what: str, advice: str, max_bytes=None, xp=None, size=None) -> None:
    """Raise :class:`MemoryBudgetError` when ``need`` bytes exceed :func:`budget`.

    The message is one line: ``"{what} needs about {size}, above the memory budget of
    {budget} ({where the budget comes from}); {advice}"``. ``size`` = (name, value,
    bytes_of) adds the largest value of that size that fits (``bytes_of(value)`` is the
    estimate at another value), e.g. ``"; at most P = 33800 fits"``.
    """
    if need <= _SMALL and max_bytes is None and _env._raw("LKR_MAX_BYTES") is None:
        return  # far below any machine's budget: no need to read /proc/meminfo
    limit = budget(max_bytes, xp)
    if need <= limit:
        return
    if max_bytes is not None:
        source = "max_bytes"
    elif _env._raw("LKR_MAX_BYTES") is not None:
        source = "LKR_MAX_BYTES"
    else:
        source = ("half of the free GPU memory" if xp is not None and xp is _cupy()
                  else "half of the available memory")
        source += "; set LKR_MAX_BYTES to change it"
    fits = ""
    if size is not None:
        name, value, bytes_of = size
        n = largest(bytes_of, limit, value)
        fits = f" (at most {name} = {n} fits)" if n > 0 else ""
    raise MemoryBudgetError(f"{what} needs about {format_bytes(need)}, above the memory budget "
                            f"of {format_bytes(limit)} ({source}); {advice}{fits}")


# -- the estimators (bytes) -----------------------------------------------------------------
def nngp_bytes(P: int, P2: int, N0: int, itemsize: int = DOUBLE) -> int:
    """:func:`lkr.nngp`: the (P, P2) result (twice where inputs are rescaled) and contiguous
    copies of both inputs."""
    return itemsize * (2 * P * P2 + 2 * (P + P2) * N0)


def fc_theory_bytes(P: int, D: int = 1, N0: int = 0) -> int:
    """An FC-kernel theory's fit (FCTheory, DeepFCTheory, the GP; one or D outputs): the
    kernel, its eigenvectors and LAPACK's workspace, about 3.2 P^2 doubles measured; 5 here,
    plus the inputs and targets."""
    return DOUBLE * (5 * P * P + 4 * P * (N0 + D)) + OVERHEAD


#: the dense BFGS model of the solvers holds at most this many unknowns (lkr.theory._optim)
DENSE_UNKNOWNS = 2000


def local_theory_bytes(P: int, D: int = 1, N0: int = 0, unknowns: int = 0) -> int:
    """A local-kernel theory's fit (CNN, LCN, deep CNN; one or D outputs) without its stored
    kernel: the (P D, P D) matrices A, its Cholesky factor, B and K_R, about 5.3 (P D)^2
    doubles measured; 7 here, plus the inputs, and the solver's dense BFGS model over the
    ``unknowns`` of Qbar (up to 2000 of them; limited-memory above) with its temporaries."""
    n, u = P * D, min(unknowns, DENSE_UNKNOWNS)
    return DOUBLE * (7 * n * n + 4 * P * N0 + 4 * u * u) + OVERHEAD


def stored_kernel_bytes(P: int, pairs: int, itemsize: int = DOUBLE) -> int:
    """The compressed local kernel of the CNN theories: sample pairs mu <= nu times
    ``pairs`` patch pairs (docs/cnn-theory-engine.md)."""
    return itemsize * pairs * (P * (P + 1) // 2)


def predict_bytes(P: int, Pt: int, D: int = 1, local: bool = False, finite: bool = True) -> int:
    """A theory's predictions at Pt test points: the cross kernel and the solve with it,
    about 2 (GP), 5 (finite-width FC) or 2.7 (CNN/LCN, in units of (Pt D)(P D)) doubles
    per entry measured; 3, 6 and 4 here."""
    if local:
        return DOUBLE * 4 * (Pt * D) * (P * D) + OVERHEAD
    return DOUBLE * (6 if finite else 3) * Pt * P + DOUBLE * 4 * Pt * D + OVERHEAD


def net_bytes(num_params: int, hidden: int, P: int = 0, chains: int = 1,
              itemsize: int = DOUBLE) -> int:
    """A network: its parameters (``chains`` copies, and the float64 draws they come from),
    and for P samples its pre-activations, activations, their derivatives and the
    backward pass's temporaries, ``hidden`` numbers per sample and chain each: about six
    such arrays measured (the FC nets' passes), seven here."""
    return (num_params * chains * (itemsize + DOUBLE)
            + 7 * chains * P * hidden * itemsize)


def collapsed_bytes(P: int, Pt: int, D: int, hidden: int, chains: int) -> int:
    """:func:`lkr.train.collapsed`, per chain: the Cholesky factor with its right-hand sides
    (P (P + D)), the features and their proposals (2 n P, n = ``hidden`` features), the test
    features (n Pt) and the cross kernel of a retained sample (P Pt) (docs/training.md)."""
    return DOUBLE * chains * (P * (P + D) + 2 * hidden * P + hidden * Pt + P * Pt)


def task_bytes(n: int, N0: int, Np: int = 0, M: int = 0, teacher_channels: int = 0) -> int:
    """A synthetic task of n = P + P_test samples of N0 inputs: the inputs, and for the local
    teacher the patches of one set (Np M per sample) and two (n, Np, C*) arrays."""
    return DOUBLE * n * (N0 + Np * M + 2 * Np * teacher_channels)


def check_theory_sizes(P: int, P_test: int) -> None:
    """Refuse a training and test set size whose CNN fit (the largest of the theories: its
    (P x P) matrices, the stored kernel aside) or predictions would not fit the budget,
    before the task is made (``lkr fc-vs-cnn``, ``lkr train``; each theory checks its own
    fit again with the real shapes)."""
    check(local_theory_bytes(P), f"fitting the theories at P = {P}", "use a smaller -P",
          size=("P", P, local_theory_bytes))

    def predict(n):
        return predict_bytes(P, n, local=True)

    check(predict(P_test), f"predicting at P_test = {P_test} test points (P = {P})",
          "use a smaller --P-test", size=("P_test", P_test, predict))
