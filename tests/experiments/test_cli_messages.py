"""What a new user of the ``lkr`` command sees (issue 22, beyond its list): a run that would
keep no samples is refused like a bad option, and warnings are one line, not Python's two
with a source line of lkr's."""
import warnings

from lkr import cli
from lkr._warnings import SamplingWarning


def test_train_refuses_a_run_that_keeps_no_samples(capsys):
    rc = cli.main(["train", "--sampler", "langevin", "--steps", "1", "--quiet", "-P", "8"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lkr train: error: --steps 1 with burn-in 0 "
                                               "and --thin 4 keep 0 sample(s) per chain")


def test_warnings_in_the_command_are_one_line(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with cli._one_line_warnings():
            warnings.warn("no samples were taken\n(steps - burn_in) // thin == 0",
                          SamplingWarning, stacklevel=1)
        before = warnings.showwarning
    err = capsys.readouterr().err
    assert err == ("lkr: warning: no samples were taken (steps - burn_in) // thin == 0 "
                   "(SamplingWarning)\n")
    assert warnings.showwarning is before   # restored


def test_train_default_sampler_is_collapsed_and_refuses_langevin_options(capsys):
    """Issue 22, item 5: the defaults mix (the collapsed sampler); Langevin's options without
    --sampler langevin are said, not ignored."""
    from lkr.experiments.train_one import DEFAULTS

    assert DEFAULTS["sampler"] == "collapsed"
    for args, named in ((["--steps", "100"], "--steps is"), (["--lr", "0.1"], "--lr is"),
                        (["--steps", "9", "--lr", "0.1"], "--steps and --lr are")):
        assert cli.main(["train", *args, "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"lkr train: error: {named} Langevin's; add --sampler " \
                                  "langevin" in err[0], err
