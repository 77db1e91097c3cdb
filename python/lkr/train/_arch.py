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
from .._validate import width as _width
from .collapsed import collapsed, default_sweeps_burn_in
from .langevin import default_burn_in, langevin

__all__ = ["ARCHITECTURES", "NAMES", "make_net", "make_theory", "sampled_test_error",
           "SAMPLERS"]

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
    width = _width(width)
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


#: samplers of :func:`sampled_test_error`
SAMPLERS = ("collapsed", "langevin")


def _check_length(sampler, sweeps, steps, burn_in, thin):
    """Refuse a run that would keep no sample (its test error would not exist), before any
    work, naming the numbers; the samplers themselves only warn, for callers that stop
    runs early on purpose."""
    name = "sweeps" if sampler == "collapsed" else "steps"
    length = _int(sweeps if sampler == "collapsed" else steps, name, 1)
    if burn_in is None:
        burn_in = (default_sweeps_burn_in if sampler == "collapsed" else default_burn_in)(length)
    burn_in, thin = _int(burn_in, "burn_in", 0), _int(thin, "thin", 1)
    if (length - burn_in) // thin < 1:
        raise ValueError(f"{name}={length} with burn_in={burn_in} and thin={thin} keep no sample "
                         f"per chain (({name} - burn_in) // thin = "
                         f"{max(0, (length - burn_in) // thin)}): raise {name}")


def sampled_test_error(arch, *, width, geometry=None, X, y, X_test, y_test, temperature,
                       activation="erf", lambda0=1.0, lambda1=1.0, chains=4, steps=None,
                       burn_in=None, lr=None, seed=0, thin=1, progress=False,
                       sampler="collapsed", sweeps=None) -> dict:
    """Sample a network's posterior and return its test error.

    Parameters
    ----------
    arch : {"fc", "cnn", "lcn", "deepcnn"}
    width : int
        N1 for FC, the channels Nc for CNN/LCN.
    geometry : PatchGeometry
        Required for CNN/LCN; ignored (may be None) for FC.
    X, y, X_test, y_test : the task
    temperature, activation, lambda0, lambda1 : as the theory's
    sampler : {"collapsed", "langevin"}
        ``"collapsed"`` (default): :func:`lkr.train.collapsed`, the exact sampler with the
        readout integrated out, run for ``sweeps`` (default 400) sweeps. It is the default
        because this function exists to compare networks with theories: it has no
        step-size bias and, measured in ``bench/bench_collapsed.py``, needs 1.7-31x less
        CPU than Langevin for the same standard error (docs/training.md). ``"langevin"``:
        :func:`lkr.train.langevin` for ``steps`` (default 4000) steps at ``lr``.
    chains, burn_in, thin, seed : see the sampler (``steps``/``sweeps`` count burn-in)
    steps, lr : Langevin's only (default 4000 steps; lr :func:`suggest_lr` at the
        initial parameters); refused with ``sampler="collapsed"``.
    sweeps : int, optional
        The collapsed sampler's only (default 400); refused with ``sampler="langevin"``.
    progress : bool or None
        Default False: callers such as ``lkr fc-vs-cnn`` draw their own progress line.

    Returns
    -------
    dict
        ``error``, ``error_se`` (over chains), ``bias2``, ``variance``, ``chains``,
        ``samples``, ``sampler``, ``rhat_max``, ``interrupted``; Langevin adds ``lr`` and
        ``steps_per_s``, the collapsed sampler ``sweeps_per_s``, ``acceptance``, ``step``
        and ``rhat_split_max``. A run interrupted by Ctrl-C gives only ``interrupted``
        (True), ``sampler``, ``steps_done`` (steps or sweeps), ``samples`` (per chain)
        and ``lr`` (None for the collapsed sampler).
    """
    _choice(sampler, "sampler", SAMPLERS)
    if sampler == "collapsed":
        if steps is not None or lr is not None:
            raise ValueError("steps and lr are Langevin's: give sweeps for the collapsed "
                             "sampler, or sampler='langevin'")
    elif sweeps is not None:
        raise ValueError("sweeps is the collapsed sampler's: give steps for Langevin, or "
                         "sampler='collapsed'")
    _check_length(sampler, 400 if sweeps is None else sweeps,
                  4000 if steps is None else steps, burn_in, thin)
    net, X, X_test = make_net(arch, width, X, X_test, geometry=geometry, activation=activation,
                              lambda0=lambda0, lambda1=lambda1, seed=seed)
    if sampler == "collapsed":
        res = collapsed(net, X, y, temperature, sweeps=400 if sweeps is None else sweeps,
                        burn_in=burn_in, thin=thin, X_test=X_test, y_test=y_test,
                        chains=chains, seed=seed, progress=progress)
        if res.interrupted:
            return dict(interrupted=True, sampler=sampler, steps_done=res.sweeps_done,
                        samples=res.samples_per_chain, lr=None)
        d = res.to_dict()
        out = res.test_error()
        out.update(sampler=sampler, sweeps_per_s=res.sweeps_per_s, acceptance=res.acceptance,
                   step=res.step, rhat_max=d["rhat_max"], rhat_split_max=d["rhat_split_max"],
                   interrupted=False)
        return out
    res = langevin(net, X, y, temperature, lr="auto" if lr is None else lr,
                   steps=4000 if steps is None else steps, burn_in=burn_in, thin=thin,
                   X_test=X_test, y_test=y_test, chains=chains, seed=seed, progress=progress)
    if res.interrupted:
        # cut short (Ctrl-C): during burn-in there are no samples at all, after it too few
        # for an estimate; the caller decides (lkr fc-vs-cnn drops the run and stops)
        return dict(interrupted=True, sampler=sampler, steps_done=res.steps_done,
                    samples=res.samples_per_chain, lr=res.settings["lr"])
    out = res.test_error()
    out.update(sampler=sampler, lr=res.settings["lr"], steps_per_s=res.steps_per_s,
               rhat_max=res.to_dict()["rhat_max"], interrupted=res.interrupted)
    return out
