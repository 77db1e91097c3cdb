"""The phases of ``lkr fc-vs-cnn`` (:mod:`lkr.experiments.fc_vs_cnn`): the task-dependent
defaults (sizes, boundary, the narrowest width of each action with D outputs), the
infinite-width Gaussian processes, the finite-width theories (serial and warm-started, or on
an executor) and Langevin sampling; each fills its rows into the dicts it is given, so that
an interrupted run keeps what is finished."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..train._arch import NAMES as _NAMES
from ..train._arch import make_theory
from . import _deep, _validity
from ._rows import _row, scores

__all__ = ["default_sizes", "default_boundary", "min_width", "IMAGE_BOUNDARY", "IMAGE_TASKS",
           "SYNTHETIC_SIZES", "SYNTHETIC_BOUNDARY"]

#: (P, P_test) of the synthetic and the MNIST/CIFAR-10 tasks
SYNTHETIC_SIZES = (400, 1000)
#: the boundary of the synthetic tasks (inputs without an edge)
SYNTHETIC_BOUNDARY = "periodic"

#: The boundary of image tasks: windows never wrap around an image (the synthetic tasks,
#: whose inputs have no edge, keep ``SYNTHETIC_BOUNDARY``).
IMAGE_BOUNDARY = "valid"

#: The image tasks (their sizes and boundary have their own defaults).
IMAGE_TASKS = ("mnist", "cifar10", "digits")


def default_sizes(task: str, P: Optional[int] = None, P_test: Optional[int] = None,
                  classes=None):
    """(P, P_test) with the missing sizes filled in: (400, 1000) for every task
    but the digits, whose defaults fit the chosen classes
    (:func:`lkr.datasets_sklearn.digits_sizes`: 180 + 180 for 0,1; 400 + 1000 for all ten)."""
    if task.partition(":")[0] == "digits":
        from ..datasets_sklearn import digits_sizes

        return digits_sizes(classes, P, P_test)
    return (SYNTHETIC_SIZES[0] if P is None else P,
            SYNTHETIC_SIZES[1] if P_test is None else P_test)


def default_boundary(task: str) -> str:
    """"valid" for image tasks (a window must not wrap around an image), else "periodic"."""
    return IMAGE_BOUNDARY if task.partition(":")[0] in IMAGE_TASKS else SYNTHETIC_BOUNDARY


def min_width(arch: str, geometry, D: int) -> int:
    """The narrowest width of ``arch``'s action with D outputs: FC N1 >= D, CNN Nc >= Np D,
    LCN Nc >= D, deep CNN Nc >= d D (one output: the deep CNN's d, no condition otherwise)."""
    if arch == "deepcnn":
        return geometry.num_patches * D
    if D == 1:
        return 1
    return geometry.num_patches * D if arch == "cnn" else D


def _infinite_width(infinite, data, geometry, common, bar, dg=None) -> None:
    """The Gaussian processes with Q = I (and the pooled one, for context), into infinite."""
    from ..theory import GPTheory

    X, y, X_test, y_test = data
    for key, label in (("fc", "GP with the FC kernel (Qbar = 1)"),
                       ("cnn", "GP with the CNN kernel K_R(I) (Qbar = I)"),
                       ("pooled", "GP with the pooled kernel K_R(11^T/Np) "
                                  "(global average pooling)")):
        bar.status(f"infinite width, {key} kernel ...")
        gp = GPTheory(kernel=key, geometry=None if key == "fc" else geometry, **common)
        gp.fit(X, y)
        infinite[key] = {"kernel": key, "description": label,
                         **scores(gp.evaluate(X_test, y_test))}
        bar.tick(f"infinite width, {key} kernel")
    infinite["lcn"] = dict(infinite["cnn"], description="same as the CNN's: with Qbar = I the "
                           "LCN and CNN kernels coincide (only the diagonal K_ii enters)",
                           same_as="cnn")
    if dg is not None:
        infinite["deepcnn"] = _deep.gp_row(data, dg, common)


def _outputs(y) -> int:
    """D: 1 for scalar labels, the columns of one-hot targets."""
    return 1 if np.ndim(y) == 1 else int(np.shape(y)[1])


def _widths(arch, widths, geoms, y):
    """The widths of ``arch`` its action admits for the targets y (:func:`min_width`: all
    for one output, but the deep CNN's at least its d final patches)."""
    need = min_width(arch, geoms[arch], _outputs(y))
    return [w for w in widths if w >= need]


def _finite_width_serial(finite, architectures, widths, data, geoms, common, bar) -> None:
    """Each architecture's theory along the widths, widest first: the solution at large N is
    close to Qbar = I, a good start for the next narrower width. Rows go into finite[arch]
    as they are finished."""
    X, y, X_test, y_test = data
    for arch in architectures:
        order = sorted(_widths(arch, widths, geoms, y), reverse=True)
        base = make_theory(arch, order[0], geometry=geoms[arch], **common)
        bar.status(f"{_NAMES[arch]}: solving at {len(order)} widths (warm-started) ...")
        for w, th in zip(order, base.fit_path(X, y, order)):
            finite[arch].append(_row(arch, w, len(y), th.evaluate(X_test, y_test), th.solution))
            bar.tick(f"{_NAMES[arch]} N={w}")
            bar.status(f"{_NAMES[arch]}: solving the next width ...")


def _fit_row(arch, width, data, geometry, common) -> dict:
    """One (architecture, width) fitted from scratch (module level, so that it pickles)."""
    X, y, X_test, y_test = data
    th = make_theory(arch, width, geometry=geometry, **common)
    with _validity.quiet_regime():
        th.fit(X, y)
    return _row(arch, width, len(y), th.evaluate(X_test, y_test), th.solution)


def _finite_width_executor(finite, architectures, widths, data, geoms, common, bar,
                           executor) -> None:
    """Every (architecture, width) fitted independently, all submitted at once so that the
    executor runs them side by side."""
    bar.status(f"solving {len(widths) * len(architectures)} (architecture, width) points on "
               "the executor ...")
    futures = {(a, w): executor.submit(_fit_row, a, w, data, geoms[a], common)
               for a in architectures for w in _widths(a, widths, geoms, data[1])}
    try:
        for (arch, w), fut in futures.items():
            finite[arch].append(fut.result())
            bar.tick(f"{_NAMES[arch]} N={w}")
    except BaseException:
        for fut in futures.values():
            fut.cancel()
        raise
