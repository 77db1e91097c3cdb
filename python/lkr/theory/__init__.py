r"""Effective-action theory of Bayesian networks at proportional width (docs/theory.md
section 2).

Each theory has the same shape::

    th = CNNTheory(geometry=g, width=Nc, temperature=T, activation="erf")
    sol = th.fit(X, y)            # Solution: Q, action, grad_norm, iterations, converged
    pred = th.predict(Xt)         # Prediction: mean, variance
    th.evaluate(Xt, yt)           # {"error", "bias2", "variance"} (test-set means)
    th.action(Q), th.gradient(Q)  # on the bound training set
    th.fit_path(X, y, widths)     # warm-started sweep, shared kernel cache

``GPTheory`` (infinite width), ``FCTheory`` (scalar Qbar), ``DeepFCTheory`` (one Q_l per
layer, vanilla or nested), ``CNNTheory`` (Np x Np Qbar), ``LCNTheory`` (diagonal Qbar),
``DeepCNNTheory`` (L convolutional layers, d x d Qbar = R^L, the last one renormalised).
The one-order-parameter actions are exact for odd activations only. For activations with a
non-zero mean (relu, ``mean="auto"``) FCTheory, CNNTheory, LCNTheory and DeepCNNTheory solve
the non-central action: the order parameter Qbar and its conjugate (``solution.conjugate``),
a saddle found as a root of the gradient; the CNN/LCN/deep-CNN versions are experimental.
With Y of shape (P, D) (e.g. one-hot classes) FCTheory, DeepFCTheory (vanilla), CNNTheory,
LCNTheory, DeepCNNTheory and GPTheory take D outputs, for odd and non-central activations
alike: predictions
(Pt, D), covariances (Pt, D, D), ``evaluate`` per output and overall, and
``predict(..., corrected=True)`` (the 1/N-corrected predictor, experimental with D
outputs; not DeepCNNTheory). DeepFCTheory with relu keeps the central action (with a warning). Formulas,
reductions and solvers: docs/theory-beyond-odd.md.
The actions hold where the filter dimension M of the renormalised layer (FC: N0) is large;
below 16 a fit warns (``TheoryRegimeWarning``, docs/validity.md), and ``Solution.filter_dim``
records M.
"""
from .._warnings import ConvergenceWarning, TheoryRegimeWarning
from .conv import CNNTheory, LCNTheory
from .deep_conv import DeepCNNTheory
from .fc import DeepFCTheory, FCTheory
from .gp import GPTheory
from .result import ConvergenceError, Prediction, Solution

__all__ = ["GPTheory", "FCTheory", "DeepFCTheory", "CNNTheory", "LCNTheory", "DeepCNNTheory",
           "Solution",
           "Prediction", "ConvergenceError", "ConvergenceWarning", "TheoryRegimeWarning"]

# lkr.theory.sweep (parameter sweeps) is added below by its own module's owner.
from .sweep import sweep  # noqa: E402

__all__ += ["sweep"]
