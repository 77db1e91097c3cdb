"""The measured choice of the training step's thread count (lkr._tuning)."""
from lkr._tuning import PROBE_EVERY, WARMUP, StepThreads


def _drive(tuner, n, cost, steps):
    used = []
    for _ in range(steps):
        k = tuner.pick(n)
        used.append(k)
        tuner.record(k, cost[k])
    return used


def test_one_thread_when_n_is_one():
    t = StepThreads()
    assert _drive(t, 1, {1: 1.0}, 10) == [1] * 10


def test_it_tries_both_then_keeps_the_faster_and_reprobes():
    t = StepThreads()
    used = _drive(t, 4, {1: 1.0, 4: 0.3}, 200)
    assert used[: 2 * WARMUP].count(1) == WARMUP and used[: 2 * WARMUP].count(4) == WARMUP
    tail = used[2 * WARMUP:]
    assert tail.count(1) <= len(tail) // PROBE_EVERY + 1   # only the probes
    assert tail.count(4) > 0.9 * len(tail)
    # a loaded machine: one thread is faster, and it is what runs
    t = StepThreads()
    tail = _drive(t, 2, {1: 1.0, 2: 3.0}, 200)[2 * WARMUP:]
    assert tail.count(2) <= len(tail) // PROBE_EVERY + 1


def test_it_follows_a_change_of_load_and_of_the_setting():
    t = StepThreads()
    used = _drive(t, 2, {1: 1.0, 2: 0.5}, 50)
    assert used[-10:] == [2] * 10
    # the machine gets loaded: two threads become slow; the probes find out
    used = _drive(t, 2, {1: 1.0, 2: 5.0}, 6 * PROBE_EVERY)
    assert used[-PROBE_EVERY // 2:].count(1) >= PROBE_EVERY // 2 - 1
    # a new upper bound starts over
    assert t.pick(3) == 3 and t.n == 3 and set(t.times) == {1, 3}
