"""One home for the architecture names of the experiments: ``"fc"``, ``"cnn"``, ``"lcn"`` and
``"deepcnn"`` (L convolutional layers on a :class:`~lkr.DeepGeometry`; ``lkr fc-vs-cnn --depth``).

:func:`make_net` builds the one-hidden-layer network, :func:`make_theory` its finite-width
theory, :func:`sampled_test_error` samples the network's posterior and returns its test
error (exported as :func:`lkr.train.sampled_test_error`). The table lives with the trainers
(it needs the nets, the theories and :func:`langevin`) so that both the experiments above
and ``lkr.train`` itself reach it without an import that points up.
"""
from __future__ import annotations

from .._validate import choice as _choice
from .._validate import integer as _int
from .._validate import samples as _samples
from .langevin import langevin

__all__ = ["ARCHITECTURES", "NAMES", "make_net", "make_theory", "sampled_test_error"]

#: architectures that :func:`make_net`, :func:`make_theory` and :func:`sampled_test_error` build
ARCHITECTURES = ("fc", "cnn", "lcn")

#: every architecture the helpers build ("deepcnn" only with a DeepGeometry)
ALL_ARCHITECTURES = ARCHITECTURES + ("deepcnn",)

#: display names
NAMES = {"fc": "FC", "cnn": "CNN", "lcn": "LCN", "deepcnn": "DCNN"}


def check_arch(arch):
    return _choice(arch, "arch", ALL_ARCHITECTURES)


def _deep_lambdas(geometry, lambda0, lambda1):
    """(lambda0, 1, ..., 1, lambda1): the experiments' two precisions, hidden layers 1."""
    return (lambda0,) + (1.0,) * (geometry.depth - 1) + (lambda1,)


def _flat(X, name):
    a = _samples(X, name)
    return a.reshape(a.shape[0], -1)


def make_net(arch, width, X=None, X_test=None, *, geometry=None, activation="erf",
             lambda0=1.0, lambda1=1.0, seed=None):
    """(net, X, X_test): the 1HL net of ``arch`` (FCNet of width N1, or CNNNet/LCNNet with
    ``width`` channels on ``geometry``) and the inputs in the shape it takes (flattened for
    FC; inputs may be None)."""
    from .. import nets

    check_arch(arch)
    width = _int(width, "width", 1)
    common = dict(activation=activation, lambda0=lambda0, lambda1=lambda1, seed=seed)
    if arch == "fc":
        if X is None:
            raise ValueError("arch 'fc' needs the inputs X to know N0")
        X = _flat(X, "X")
        X_test = None if X_test is None else _flat(X_test, "X_test")
        return nets.FCNet(X.shape[1], width, **common), X, X_test
    if geometry is None:
        raise ValueError(f"arch {arch!r} needs a geometry (a PatchGeometry)")
    if arch == "deepcnn":
        return nets.DeepCNNNet(geometry, width, activation=activation, seed=seed,
                               lambdas=_deep_lambdas(geometry, lambda0, lambda1)), X, X_test
    cls = nets.CNNNet if arch == "cnn" else nets.LCNNet
    return cls(geometry=geometry, width=width, **common), X, X_test


def make_theory(arch, width, *, geometry=None, **common):
    """The finite-width theory of ``arch`` (FCTheory, CNNTheory or LCNTheory); ``width=None``
    gives the infinite-width GPTheory of the architecture's kernel."""
    from .. import theory as th

    check_arch(arch)
    if arch == "deepcnn":
        lams = _deep_lambdas(geometry, common.pop("lambda0", 1.0), common.pop("lambda1", 1.0))
        if width is None:
            return th.GPTheory(kernel="cnn", geometry=geometry, lambdas=lams, **common)
        return th.DeepCNNTheory(geometry=geometry, width=width, lambdas=lams, **common)
    if width is None:
        if arch == "fc":
            return th.GPTheory(kernel="fc", **common)
        return th.GPTheory(kernel="cnn", geometry=geometry, **common)
    if arch == "fc":
        return th.FCTheory(width=width, **common)
    cls = th.CNNTheory if arch == "cnn" else th.LCNTheory
    return cls(geometry=geometry, width=width, **common)


def sampled_test_error(arch, *, width, geometry=None, X, y, X_test, y_test, temperature,
                       activation="erf", lambda0=1.0, lambda1=1.0, chains=4, steps=4000,
                       burn_in=None, lr=None, seed=0, thin=1, progress=False) -> dict:
    """Sample a 1HL network's posterior by :func:`langevin` and return its test error.

    Parameters
    ----------
    arch : {"fc", "cnn", "lcn", "deepcnn"}
    width : int
        N1 for FC, the channels Nc for CNN/LCN.
    geometry : PatchGeometry
        Required for CNN/LCN; ignored (may be None) for FC.
    X, y, X_test, y_test : the task
    temperature, activation, lambda0, lambda1 : as the theory's
    chains, steps, burn_in, thin, seed : see :func:`langevin` (``steps`` counts burn-in)
    progress : bool or None
        Default False: callers such as ``lkr fc-vs-cnn`` draw their own progress line.
    lr : float, optional
        Default :func:`suggest_lr` at the initial parameters.

    Returns
    -------
    dict
        ``error``, ``error_se`` (over chains), ``bias2``, ``variance``, ``chains``,
        ``samples``, and ``lr``, ``steps_per_s``, ``rhat_max``, ``interrupted``; a run
        interrupted by Ctrl-C gives only ``interrupted`` (True), ``steps_done``,
        ``samples`` (per chain) and ``lr``.
    """
    net, X, X_test = make_net(arch, width, X, X_test, geometry=geometry, activation=activation,
                              lambda0=lambda0, lambda1=lambda1, seed=seed)
    if lr is None:
        lr = "auto"
    res = langevin(net, X, y, temperature, lr=lr, steps=steps, burn_in=burn_in, thin=thin,
                   X_test=X_test, y_test=y_test, chains=chains, seed=seed, progress=progress)
    if res.interrupted:
        # cut short (Ctrl-C): during burn-in there are no samples at all, after it too few
        # for an estimate; the caller decides (lkr fc-vs-cnn drops the run and stops)
        return dict(interrupted=True, steps_done=res.steps_done,
                    samples=res.samples_per_chain, lr=res.settings["lr"])
    out = res.test_error()
    out.update(lr=res.settings["lr"], steps_per_s=res.steps_per_s,
               rhat_max=res.to_dict()["rhat_max"], interrupted=res.interrupted)
    return out

