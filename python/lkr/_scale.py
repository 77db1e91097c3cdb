r"""Huge and tiny but finite inputs: exact power-of-two rescaling and the representability
checks of the kernels (issue 14, item 4).

Why: C = x . y / (lambda0 M) overflows long before x does (|x| ~ 1e154 in float64, 1e19
in float32), and a map computed from an overflowed C is silently wrong (erf gives 0 where
the answer is 1, relu NaN). Two facts fix this without touching the hot loops:

* Scaling by a power of two is exact in binary floating point (away from underflow), so
  inputs can be brought to unit scale, the covariances computed there, and the result
  scaled back with the same rounding the unscaled formulas give for ordinary inputs.
* The maps are bounded or homogeneous: erf depends on the covariances only through
  u = 2 c_xy / sqrt((1 + 2 c_xx)(1 + 2 c_yy)) in [-1, 1], which has a finite limit
  (the correlation c_xy / sqrt(c_xx c_yy)) as the inputs grow; relu and linear are
  homogeneous of degree one in C, K(a x, b y) = a b K(x, y) for a, b > 0. Their results
  are as large as C itself, so where C cannot be represented in the working dtype the
  kernel cannot either, and a ValueError says so (naming the input's scale) instead.

The compiled kernels normalise each patch row by the power of two of its largest entry
(``lkr::prepared_factors`` in csrc/lkr/activations.hpp and its CUDA twin); this module
does the Python-side part: the FC kernel's GEMM, the linear GEMM forms and the checks.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["max_abs", "row_exponents", "exponent", "check_growth", "check_result", "overflow_error"]


def max_abs(A) -> float:
    """max |A| as a Python float (0 for an empty array); two reductions, no temporary."""
    if A is None or A.size == 0:
        return 0.0
    return float(max(A.max(), -A.min()))


def _safe_range(dtype, n, lambda0=1.0):
    """(lo, hi): rows with lo <= max|x| <= hi have squared norms of n terms well inside
    the normal range of ``dtype``, and C = |x|^2 / (lambda0 n) with C^2 too (the compiled
    maps form (1 + 2 C_xx)(1 + 2 C_yy))."""
    fi = np.finfo(dtype)
    fmax = float(fi.max)
    hi = min(math.sqrt(fmax / (4.0 * max(n, 1))), math.sqrt(lambda0 * math.sqrt(fmax) / 4.0))
    lo = math.sqrt(float(fi.tiny)) * 2.0 ** (fi.nmant / 2)
    return lo, hi


def exponent(amax: float, dtype, n: int, lambda0=1.0) -> int:
    """The power-of-two exponent e to divide an array of max |entry| ``amax`` by (0 when
    the array is already in the safe range, so ordinary inputs take the unchanged path)."""
    lo, hi = _safe_range(dtype, n, lambda0)
    if amax == 0.0 or lo <= amax <= hi:
        return 0
    return math.frexp(amax)[1]


def row_exponents(A, xp, dtype, n: int, lambda0=1.0):
    """Per-row exponents e (int64, shape (P,)) for a (P, n) array, or None when every row
    is in the safe range. ``A * 2^-e`` has its largest entry in [1/2, 1)."""
    if A.shape[0] == 0 or A.shape[1] == 0:
        return None
    amax = xp.maximum(A.max(axis=1), -A.min(axis=1)).astype(np.float64)
    lo, hi = _safe_range(dtype, n, lambda0)
    nz = amax > 0
    if not bool(((amax <= hi) & ((amax >= lo) | ~nz)).all()):
        _, e = xp.frexp(amax)
        return xp.where(nz, e, 0).astype(np.int64)
    return None


def overflow_error(name, amax, cmax, activation, dtype):
    fmax = float(np.finfo(dtype).max)
    hint = " or compute in float64" if np.dtype(dtype) == np.float32 and cmax < 1e300 else ""
    return ValueError(
        f"{name} has entries up to {amax:.3g}, so C = x.x / (lambda0 M) reaches {cmax:.3g}: "
        f"the {activation} kernel grows like C and cannot be represented in {np.dtype(dtype)} "
        f"(largest {fmax:.3g}); rescale {name} (K(a X) = a^2 K(X) for {activation}){hint}")


def check_growth(activation, arrays, lambda0, M, dtype):
    """For relu and linear, raise ValueError when max_x C(x, x) = |x|^2 / (lambda0 M) over
    the rows of any of ``arrays`` ((name, array) pairs, rows along the last axis) exceeds
    a quarter of the largest ``dtype`` (the kernel's entries are bounded by it: linear
    |K| <= max C, relu 0 <= K <= max C / 2). erf is bounded by 1 and never raises."""
    if activation == "erf":
        return
    limit = float(np.finfo(dtype).max) / 4
    for name, A in arrays:
        if A is None or A.size == 0:
            continue
        amax = max_abs(A)
        if amax * amax / lambda0 <= limit:  # the cheap bound C <= max|x|^2 / lambda0
            continue
        e = math.frexp(amax)[1]
        S = A.astype(np.float64) * 2.0 ** -e  # exact; the sums below cannot overflow
        c = float((S * S).sum(axis=-1).max()) / (lambda0 * M)
        try:
            cmax = math.ldexp(c, 2 * e)
        except OverflowError:
            cmax = math.inf
        if cmax > limit:
            raise overflow_error(name, amax, cmax, activation, dtype)


def check_result(out, xp, what, arrays):
    """Raise ValueError when a computed result has a non-finite entry (inputs were finite,
    so the result overflowed its dtype), naming the inputs' scale. For the contractions,
    whose outputs are small next to their cost."""
    if out.size and not bool(xp.isfinite(out).all()):
        scales = ", ".join(f"max |{n}| = {max_abs(A):.3g}" for n, A in arrays if A is not None)
        raise ValueError(f"{what} overflows {out.dtype} for these inputs ({scales}); "
                         "rescale them (relu and linear kernels scale like |x|^2) or compute "
                         "in float64")
