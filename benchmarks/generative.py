"""Generative benchmark: MPS Born machines (tnkit.ml.MPSBornMachine) against the figures of
Han et al. (2018), against quimb for sampling and against IsolationForest for anomalies.

Usage::

    python benchmarks/generative.py [--quick] [--json] [--cases SUBSTRING]
                                    [--minutes M] [--mnist-full-minutes M]

Cases (``--quick`` shrinks the MNIST ones; the reference of each is named in the row):

* ``bas4x4_nll_2sweeps``: NLL (nats) on the 30 bars-and-stripes 4x4 patterns after two
  sweeps from a random start; reference ln 30 (the data entropy, the optimum). The row
  also carries the training time, and the validity and coverage of 10,000 samples.
* ``bas4x4_train_seconds``: its wall time; reference: the 0.24 s measured for the
  original code of Han et al. (congzlwag/UnsupGenModbyMPS) on the 2-core development
  machine, *not* re-run in this process.
* ``mnist1k_bond10_sweep_seconds``: seconds per sweep at max bond 10 on the first 1,000
  binarized (threshold 0.5) 28x28 training images, with ``MNIST_SETTINGS``; reference:
  7 s, the fastest sweep of the original code measured on the same machine, not re-run.
* ``mnist1k_bond10_crash_settings_nll``: two sweeps (four without ``--quick``) with the settings that make the
  original overflow (bond 10, learning rate 0.05, cutoff 1e-7, random start); the NLL
  must stay finite and decrease.
* ``mnist1k_bond10_nll`` / ``mnist1k_bond100_nll`` (not in ``--quick``): training NLL after
  sweeping for at most ``--minutes`` (or until two sweeps gain less than 0.002) with
  ``MNIST_SETTINGS`` (the authors' later "norm0.25" gradient rule, one step per pair);
  reference: the original code's logged training NLL (95.19 and 39.86, on *its* random
  1,000 images, here the first 1,000); the held-out NLL on the first 1,000 test images
  is in ``test_nll``.
* ``bas4x4_ttn_vs_mps_nll_2sweeps``: the TTN Born machine (``Tree.grid(4, 4)``) after two
  sweeps at the bond whose parameter count is closest to the trained MPS's; reference the
  MPS NLL (median of 5 seeds each), with both times and the TTN's sample validity.
* ``mnist1k_ttn_vs_mps_nll`` (not in ``--quick``): first 1,000 images, MPS at max bond 10
  against the TTN (``Tree.grid(28, 28)``) of closest parameter count, each given
  ``--compare-cpu-minutes`` of CPU time (robust to the load); training and test NLL
  (1,000 test images) per sweep; ``--figures DIR`` writes ``born_ttn_vs_mps_mnist.png``.
* ``mnist60k_bond{B}_nll`` (only with ``--mnist-full-minutes``): all 60,000 training images
  for that many minutes at ``--full-bond`` (default 24), each sweep on a fresh random
  ``--full-batch`` (default 10,000) of them, which bounds the environments' memory (the
  learning rate halves when a sweep's NLL is no better than the three before); the
  training NLL of all 60,000, the test NLL on the 10,000 test images, wall and CPU time,
  and the learning curve (``--figures DIR`` writes ``born_mnist60k_curve.png``).
* ``sample_n784_bond64``: exact samples per second from a random normalised MPS (N=784,
  bond 64); reference quimb's ``MatrixProductState.sample`` on the same state, timed on
  fewer samples (it draws one at a time; skipped in ``--quick``).
* ``log_prob_n784_bond64``: rows per second of ``log_prob`` on 1,000 samples of that state,
  against the same 1,000 per second goal (median of repeats, interleaved with sampling).
* ``anomaly_mnist_digit0_auc``: train on binarized images of digit 0, score held-out zeros
  (normal) and other digits (anomalies) by NLL; ROC AUC against scikit-learn's
  IsolationForest fitted on the same images in the same run.
* ``explain_bruteforce_n12_error``: largest absolute error of the entanglement entropies and
  mutual informations of a 12-site model against brute force on the dense state.

* ``recovery_{mps,ttn}_n{N}_chi{C}`` (``--quick``: 12 sites, bonds 2 and 4, one seed): data
  drawn from the Born distribution of a random MPS (or balanced-tree TTN) of bond ``C`` on
  ``N`` binary features (``recovery_mps_n12_chi4_d3``: 3-valued features), 20,000 training
  and 20,000 held-out samples; the model is the default fit with ``max_bond=C``
  (``random_state`` different from the data's). Reported: the held-out NLL gap
  ``mean(log p_true - log p_model)`` and the exact KL divergence (all ``d**N``
  configurations), median and range over the seeds (``--recovery-seeds``, default 3;
  ``--recovery-first-seed`` for other data; ``--recovery-kinds mps,ttn``;
  ``--recovery-cases mps_n16_chi8,...`` for a subset; ``--recovery-options n_hops=0`` for
  options on top of the defaults; ``--recovery-dtype complex128`` for complex random cores,
  cases ``recovery_..._complex``),
  against the finite-sample floor ``k / (2 n)`` (``k`` real parameters of the model, ``n``
  training samples); the goal is a gap within 0.02 nats of the floor. Fit CPU and wall seconds
  (the whole fit, every start) and the sweeps and hops of the kept fit are in the row.
* ``gradient_epoch_n12_bond4_seconds``: one epoch of the minibatch gradient trainer (Adam,
  batch 100) over 20,000 samples of 12 binary features at bond 4, median of 5 after a
  warm-up, real and complex; reference: 4.6 s, the figure of the previous implementation
  on this machine (not re-run). Goal: under 0.2 s of CPU time (``cpu_seconds``; the wall
  time is in the row too, but on a shared machine it measures the load).

All timings depend on the load of the machine; ratios of cases whose reference is a
logged figure (not re-run here) are indicative only.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    Reporter,
    add_data_argument,
    base_parser,
    case_selected,
    fmt_float,
    load_average,
    log,
    make_row,
    use_data_dir,
)

BENCH = "generative"
HAN_BAS_SECONDS = 0.24
HAN_SWEEP_SECONDS = 7.0
HAN_NLL = {10: 95.19, 100: 39.86, 500: 12.95, 1300: 6.96}
#: Goal: samples (and log_prob rows) per second per core at N=784, bond 64.
GOAL_RATE = 1000


def _mnist(split: str, n: int | None, digit: int | None = None) -> np.ndarray | None:
    from tnkit.datasets import binarize, load_mnist

    try:
        data = load_mnist(split=split, n_samples=None if digit is not None else n)
    except FileNotFoundError as exc:
        log(f"skipping MNIST cases: {exc}")
        return None
    X = binarize(data.data, 0.5)
    if digit is not None:
        X = X[data.target == digit][:n]
    return X


# ---------------------------------------------------------------------- cases


def case_bas(rep: Reporter) -> None:
    from tnkit.datasets import bars_and_stripes
    from tnkit.ml import MPSBornMachine

    X = bars_and_stripes(4)
    times, nlls = [], []
    for seed in range(5):
        tick = time.perf_counter()
        model = MPSBornMachine(max_bond=32, init_bond=16, n_sweeps=2, random_state=seed).fit(X)
        times.append(time.perf_counter() - tick)
        nlls.append(-model.score(X))
    samples = model.sample(10_000, random_state=0)
    valid = {tuple(r) for r in X}
    valid_fraction = float(np.mean([tuple(r) in valid for r in samples]))
    present = len({tuple(r) for r in samples} & valid)
    nll = float(np.median(nlls))
    rep.emit(make_row(BENCH, "bas4x4_nll_2sweeps", nll, "ln30_data_entropy", math.log(30), metric="nll_nats",
                      worst_nll_of_5_seeds=max(nlls), seconds=float(np.median(times)), sweeps=2,
                      samples_valid_fraction=valid_fraction, patterns_present=present,
                      goal="within 0.001 of ln 30 in <= 2 sweeps, < 1 s",
                      goal_met=bool(max(nlls) - math.log(30) < 1e-3 and max(times) < 1.0)))
    rep.emit(make_row(BENCH, "bas4x4_train_seconds", float(np.median(times)), "han2018_code_logged",
                      HAN_BAS_SECONDS, note="reference measured once on this machine, not re-run"))


#: Sweep settings of the MNIST runs: the authors' "norm0.25" gradient rule, one step per pair,
#: and no cutoff (their capacity runs use 1e-50): the bond fills up to ``max_bond``.
MNIST_SETTINGS = dict(cutoff=0.0, learning_rate=0.005, normalized_gradient=True, n_descent_steps=1)
#: The same rule for the tree (node-local sweeps); no cutoff there, the bonds are fixed.
TTN_MNIST_SETTINGS = dict(learning_rate=0.005, normalized_gradient=True, n_descent_steps=1)


def case_mnist_sweep_seconds(rep: Reporter, quick: bool) -> None:
    from tnkit.ml import MPSBornMachine

    X = _mnist("train", 1000)
    if X is None:
        return
    model = MPSBornMachine(max_bond=10, n_sweeps=4 if quick else 8, random_state=0, **MNIST_SETTINGS).fit(X)
    # the first sweeps grow the bond 2 -> 4 -> 8 -> 10; time the sweeps at bond 10
    seconds = model.history_.seconds
    at_max = [s for s, b in zip(seconds, model.history_.max_bond) if b == 10] or seconds
    value = float(np.median(at_max))
    rep.emit(make_row(BENCH, "mnist1k_bond10_sweep_seconds", value, "han2018_code_measured", HAN_SWEEP_SECONDS,
                      nll_per_sweep=model.history_.nll, settings=MNIST_SETTINGS, goal="< 5 s per sweep",
                      goal_met=value < 5.0,
                      note="a sweep is one pass over the 783 bonds; reference not re-run in this process"))


def case_mnist_crash_settings(rep: Reporter, quick: bool) -> None:
    """The original overflows at bond 10, learning rate 0.05, cutoff 1e-7 from a random start."""
    from tnkit.ml import MPSBornMachine

    X = _mnist("train", 1000)
    if X is None:
        return
    model = MPSBornMachine(max_bond=10, cutoff=1e-7, learning_rate=0.05, n_descent_steps=10,
                           n_sweeps=2 if quick else 4, random_state=0).fit(X)
    nll = model.history_.nll
    rep.emit(make_row(BENCH, "mnist1k_bond10_crash_settings_nll", nll[-1], "han2018_code_crashes", None,
                      metric="nll_nats", nll_per_sweep=nll, finite=bool(np.all(np.isfinite(nll))),
                      goal="trains without overflow", goal_met=bool(np.all(np.isfinite(nll)) and nll[-1] < nll[0])))


def _train_until(model: Any, X: np.ndarray, minutes: float, min_gain: float = 0.002) -> Any:
    """Sweep one at a time (warm start) until ``minutes`` pass or the NLL gains less than
    ``min_gain`` over two sweeps (the authors' stopping rule: 0.002 per loop of two sweeps)."""
    model.set_params(warm_start=True, n_sweeps=1)
    start = time.perf_counter()
    while time.perf_counter() - start < 60 * minutes:
        model.fit(X)
        nll = model.history_.nll
        log(f"    sweep {len(nll)}: NLL {nll[-1]:.3f}, bond {model.history_.max_bond[-1]}, "
            f"{model.history_.seconds[-1]:.1f} s")
        if len(nll) > 4 and nll[-3] - nll[-1] < min_gain:
            break
    return model


def case_mnist_nll(rep: Reporter, bond: int, minutes: float) -> None:
    from tnkit.ml import MPSBornMachine

    X, X_test = _mnist("train", 1000), _mnist("test", 1000)
    if X is None or X_test is None:
        return
    model = MPSBornMachine(max_bond=bond, random_state=0, **MNIST_SETTINGS)
    _train_until(model, X, minutes)
    train = -model.score(X)
    rep.emit(make_row(BENCH, f"mnist1k_bond{bond}_nll", train, "han2018_code_logged", HAN_NLL[bond],
                      metric="nll_nats", test_nll=-model.score(X_test), sweeps=len(model.history_.nll),
                      seconds=float(sum(model.history_.seconds)), finite=bool(np.isfinite(train)),
                      goal=f"<= {HAN_NLL[bond]}", goal_met=bool(train <= HAN_NLL[bond] + 0.01)))


def case_mnist_full(rep: Reporter, bond: int, minutes: float, batch: int, rate: float, figure: str | None) -> None:
    """All 60,000 training images for ``minutes`` of sweeps, each sweep on a fresh random ``batch`` of them.

    The environments of a sweep take ``batch * sum(D) * 8`` bytes (2 GB at 10,000 images
    and bond 32; all 60,000 would take 12 GB), so the subset bounds the memory; the cost
    of a sweep is linear in ``batch``. The training NLL of all 60,000 images and the test
    NLL of the 10,000 test images are measured every few sweeps (the learning curve) and
    at the end.
    """
    from tnkit.datasets import binarize, load_mnist
    from tnkit.ml import MPSBornMachine

    try:
        train, test = load_mnist(split="train"), load_mnist(split="test")
    except FileNotFoundError as exc:
        log(f"skipping the 60,000-image case: {exc}")
        return
    X, X_test = binarize(train.data, 0.5), binarize(test.data, 0.5)
    # a Generator, not a seed: each one-sweep warm-start fit draws a fresh subset (a seed would redraw the same)
    settings = {**MNIST_SETTINGS, "learning_rate": rate}
    model = MPSBornMachine(max_bond=bond, random_state=np.random.default_rng(0), batch_size=batch,
                           warm_start=True, n_sweeps=1, **settings)
    curve: list[tuple[int, float, float]] = []  # (sweep, train NLL of all 60k, test NLL)
    wall, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < 60 * minutes:
        model.fit(X)
        h = model.history_
        k = len(h.nll)
        _halve_on_plateau(model)
        if k % 5 == 0:
            curve.append((k, -model.score(X), -model.score(X_test)))
            log(f"    sweep {k}: batch NLL {h.nll[-1]:.3f}, train {curve[-1][1]:.3f}, test {curve[-1][2]:.3f}, "
                f"bond {h.max_bond[-1]}, {h.seconds[-1]:.1f} s, load {load_average()}")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    train_nll, test_nll = -model.score(X), -model.score(X_test)
    curve.append((len(model.history_.nll), train_nll, test_nll))
    if figure:
        _plot_learning_curve(model.history_.nll, curve, bond, batch, figure)
    rep.emit(make_row(BENCH, f"mnist60k_bond{bond}_nll", train_nll, None, None, metric="nll_nats",
                      test_nll=test_nll, sweeps=len(model.history_.nll), batch_per_sweep=batch,
                      train_seconds=float(sum(model.history_.seconds)), wall_seconds=wall, cpu_seconds=cpu,
                      load_average=load_average(), batch_nll_per_sweep=model.history_.nll, curve=curve,
                      learning_rate_per_sweep=model.history_.learning_rate,
                      settings=settings))


def _halve_on_plateau(model: Any, window: int = 3, floor: float = 5e-4) -> None:
    """Halve the warm-start learning rate after a sweep whose batch NLL is no better than the ``window`` before.

    The normalised rule steps ``learning_rate * size**0.25`` however close the optimum is
    (0.03 per step at bond 24 and rate 0.005), so at a fixed rate the NLL stalls at a
    noise floor: in the 60,000-image run at bond 24 it sat near 157 from sweep 3 to 8 at
    0.005 and fell by 2-5 nats a sweep once three halvings in a row had brought the rate
    to 0.000625. On random subsets the full-batch ``learning_rate_decay`` rule is off.
    """
    nll = model.history_.nll
    if len(nll) > window and nll[-1] >= min(nll[-1 - window : -1]) and model.learning_rate_ > floor:
        model.learning_rate_ = max(floor, model.learning_rate_ / 2)
        log(f"    learning rate halved to {model.learning_rate_:g}")


def _plot_learning_curve(batch_nll: list[float], curve: list, bond: int, batch: int, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(1, len(batch_nll) + 1), batch_nll, color="0.6", lw=1, label=f"sweep's {batch:,} images")
    sweeps, train, test = zip(*curve)
    ax.plot(sweeps, train, "o-", ms=3, label="all 60,000 training images")
    ax.plot(sweeps, test, "s-", ms=3, label="10,000 test images")
    ax.set_xlabel("sweep")
    ax.set_ylabel("NLL (nats)")
    ax.set_ylim(min(min(train), min(test)) - 5, min(max(batch_nll), max(test) + 80))
    ax.set_title(f"MPS Born machine, binarized MNIST, max bond {bond}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ttn_bond_for(n_params: int, tree: Any, phys_dim: int = 2) -> int:
    """The TTN bond whose parameter count on ``tree`` is closest to ``n_params``."""
    import tnkit

    counts = {b: tnkit.TTN.random(tree, phys_dim, b, seed=0, normalize=False).num_params for b in range(1, 65)}
    return min(counts, key=lambda b: abs(counts[b] - n_params))


def case_bas_tree_vs_chain(rep: Reporter) -> None:
    """Bars-and-stripes 4x4: TTN Born machine (grid tree) against the MPS one at equal parameter count."""
    from tnkit.datasets import bars_and_stripes
    from tnkit.ml import MPSBornMachine
    from tnkit.ml.ttn_born_machine import TTNBornMachine
    from tnkit.ml.ttn_classifier import feature_tree

    X = bars_and_stripes(4)
    mps_nll, ttn_nll, mps_s, ttn_s = [], [], [], []
    for seed in range(5):
        tick = time.perf_counter()
        mps = MPSBornMachine(max_bond=32, init_bond=16, n_sweeps=2, random_state=seed).fit(X)
        mps_s.append(time.perf_counter() - tick)
        mps_nll.append(-mps.score(X))
        params = sum(t.size for t in mps.mps_.tensors)
        bond = _ttn_bond_for(params, feature_tree(16))
        tick = time.perf_counter()
        ttn = TTNBornMachine(max_bond=bond, n_sweeps=2, random_state=seed).fit(X)
        ttn_s.append(time.perf_counter() - tick)
        ttn_nll.append(-ttn.score(X))
    samples = ttn.sample(10_000, random_state=0)
    valid = {tuple(r) for r in X}
    rep.emit(make_row(BENCH, "bas4x4_ttn_vs_mps_nll_2sweeps", float(np.median(ttn_nll)), "mps_born_machine",
                      float(np.median(mps_nll)), metric="nll_nats", ln30=math.log(30),
                      worst_ttn_nll_of_5_seeds=max(ttn_nll), ttn_seconds=float(np.median(ttn_s)),
                      mps_seconds=float(np.median(mps_s)), ttn_bond=bond, ttn_params=ttn.num_params,
                      mps_params=params, ttn_samples_valid_fraction=float(np.mean([tuple(r) in valid for r in samples])),
                      ttn_patterns_present=len({tuple(r) for r in samples} & valid),
                      note="TTN on Tree.grid(4, 4) at the bond whose parameter count is closest to the trained MPS's"))


def _train_for_cpu(model: Any, X: np.ndarray, X_test: np.ndarray, cpu_seconds: float) -> list[tuple]:
    """Sweep one at a time until ``cpu_seconds`` of process CPU time are spent (robust to the machine's load).

    Returns the curve ``(sweep, cpu seconds, train NLL, test NLL)`` after every sweep.
    """
    model.set_params(warm_start=True, n_sweeps=1)
    curve, cpu = [], 0.0
    while cpu < cpu_seconds:
        tick = time.process_time()
        model.fit(X)
        cpu += time.process_time() - tick
        curve.append((len(model.history_.nll), cpu, model.history_.nll[-1], -model.score(X_test)))
        log(f"    {type(model).__name__} sweep {curve[-1][0]}: train {curve[-1][2]:.3f}, test {curve[-1][3]:.3f}, "
            f"cpu {cpu:.0f} s")
    return curve


def case_mnist_tree_vs_chain(rep: Reporter, cpu_minutes: float, figure: str | None) -> None:
    """First 1,000 MNIST images: TTN (grid tree) against MPS Born machine at equal parameter count and CPU time."""
    from tnkit.ml import MPSBornMachine
    from tnkit.ml.ttn_born_machine import TTNBornMachine
    from tnkit.ml.ttn_classifier import feature_tree

    X, X_test = _mnist("train", 1000), _mnist("test", 1000)
    if X is None or X_test is None:
        return
    mps = MPSBornMachine(max_bond=10, random_state=0, **MNIST_SETTINGS)
    mps_curve = _train_for_cpu(mps, X, X_test, 60 * cpu_minutes)
    mps_params = sum(t.size for t in mps.mps_.tensors)
    bond = _ttn_bond_for(mps_params, feature_tree(784))
    ttn = TTNBornMachine(max_bond=bond, random_state=0, **TTN_MNIST_SETTINGS)
    ttn_curve = _train_for_cpu(ttn, X, X_test, 60 * cpu_minutes)
    if figure:
        _plot_tree_vs_chain(mps_curve, ttn_curve, mps_params, ttn.num_params, figure)
    rep.emit(make_row(BENCH, "mnist1k_ttn_vs_mps_nll", -ttn.score(X), "mps_born_machine_bond10", -mps.score(X),
                      metric="nll_nats", ttn_test_nll=-ttn.score(X_test), mps_test_nll=-mps.score(X_test),
                      ttn_bond=bond, ttn_params=ttn.num_params, mps_params=mps_params,
                      ttn_sweeps=len(ttn_curve), mps_sweeps=len(mps_curve), cpu_seconds_each=60 * cpu_minutes,
                      ttn_curve=ttn_curve, mps_curve=mps_curve, load_average=load_average(),
                      note="same CPU-time budget each; TTN on Tree.grid(28, 28)"))


def _plot_tree_vs_chain(mps_curve: list, ttn_curve: list, mps_params: int, ttn_params: int, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for curve, name, params, colour in [(mps_curve, "MPS", mps_params, "C0"), (ttn_curve, "TTN", ttn_params, "C1")]:
        _, cpu, train, test = zip(*curve)
        ax.plot(cpu, train, "o-", ms=3, color=colour, label=f"{name} ({params:,} parameters), training")
        ax.plot(cpu, test, "s--", ms=3, color=colour, label=f"{name}, 1,000 test images")
    ax.set_xlabel("CPU seconds (one core)")
    ax.set_ylabel("NLL (nats)")
    ax.set_ylim(min(c[2] for c in mps_curve + ttn_curve) - 5, 200)
    ax.set_title("Born machines on 1,000 binarized MNIST images")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rate_row(case: str, n: int, timing: Any, what: str, **extra: Any) -> dict[str, Any]:
    """Rows per second of a timed call on ``n`` rows, against the goal of 1,000 per second."""
    rate = n / timing.median
    return make_row(BENCH, case, rate, "goal_1000_per_s", GOAL_RATE, metric=f"{what}_per_second",
                    lower_is_better=False, goal=f">= {GOAL_RATE} {what}/s", goal_met=rate >= GOAL_RATE,
                    seconds_median=timing.median, repeats=timing.repeats, load_average=load_average(), **extra)


def case_sampling(rep: Reporter, quick: bool) -> None:
    """Samples and ``log_prob`` rows per second at N=784, bond 64 (median of repeats, after a warm-up)."""
    from _common import measure

    import tnkit
    from tnkit.ml import MPSBornMachine

    psi = tnkit.MPS.random(784, 64, seed=0)
    model = MPSBornMachine()
    model.mps_, model.n_categories_, model.n_features_in_ = psi, np.full(784, 2), 784
    n = 1000
    samples = psi.sample(n, seed=1)
    calls = {"sample": lambda: psi.sample(n, seed=1), "log_prob": lambda: model.log_prob(samples)}
    t = measure(calls, repeats=3 if quick else 5)
    cpu = {}
    for name, call in calls.items():  # CPU time of one call: the quiet-machine estimate (one thread)
        tick = time.process_time()
        call()
        cpu[name] = time.process_time() - tick
    ref_rate, note = None, "quimb skipped in --quick (it draws one sample at a time)"
    if not quick:
        try:
            q = psi.to_quimb()
            list(q.sample(1, seed=0))
            tick = time.perf_counter()
            list(q.sample(3, seed=1))
            ref_rate, note = 3 / (time.perf_counter() - tick), "quimb timed on 3 samples"
        except ImportError as exc:  # pragma: no cover - quimb is a core dependency
            note = f"quimb unavailable: {exc}"
    rep.emit(_rate_row("sample_n784_bond64", n, t["sample"], "samples", quimb_samples_per_second=ref_rate,
                       note=note, cpu_seconds=cpu["sample"], per_second_from_cpu=n / cpu["sample"]))
    rep.emit(_rate_row("log_prob_n784_bond64", n, t["log_prob"], "rows", cpu_seconds=cpu["log_prob"],
                       per_second_from_cpu=n / cpu["log_prob"],
                       note="exact log p(x) of 1,000 samples of the same state, one vectorised pass"))


def case_anomaly(rep: Reporter, quick: bool) -> None:
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score

    from tnkit.datasets import binarize, load_mnist
    from tnkit.ml import MPSBornMachine

    n_train = 300 if quick else 2000
    n_test = 300 if quick else 1000
    try:
        train, test = load_mnist(split="train"), load_mnist(split="test")
    except FileNotFoundError as exc:
        log(f"skipping anomaly case: {exc}")
        return
    X = binarize(train.data[train.target == 0][:n_train])
    Xt = binarize(test.data)
    normal = Xt[test.target == 0][:n_test]
    anomalies = Xt[test.target != 0][:n_test]
    X_eval = np.vstack([normal, anomalies])
    y_eval = np.r_[np.zeros(len(normal)), np.ones(len(anomalies))]
    tick = time.perf_counter()
    model = MPSBornMachine(max_bond=10, n_sweeps=6 if quick else 20, random_state=0, **MNIST_SETTINGS).fit(X)
    seconds = time.perf_counter() - tick
    auc = roc_auc_score(y_eval, -model.score_samples(X_eval))
    forest = IsolationForest(random_state=0).fit(X)
    auc_forest = roc_auc_score(y_eval, -forest.score_samples(X_eval))
    rep.emit(make_row(BENCH, "anomaly_mnist_digit0_auc", auc, "sklearn_isolation_forest", auc_forest,
                      metric="roc_auc", lower_is_better=False, n_train=len(X), train_seconds=seconds))


def case_explain(rep: Reporter) -> None:
    import tnkit
    from tnkit.ml import MPSBornMachine
    from tnkit.ml import explain as ex

    model = MPSBornMachine()
    model.mps_ = tnkit.MPS.random(12, 8, seed=3)
    model.n_categories_, model.n_features_in_ = np.full(12, 2), 12
    v = model.mps_.to_dense().reshape((2,) * 12)
    err = 0.0
    for b in range(11):
        s = np.linalg.svd(v.reshape(2 ** (b + 1), -1), compute_uv=False) ** 2
        s = s[s > 0] / s.sum()
        err = max(err, abs(ex.entanglement_entropies(model)[b] + np.sum(s * np.log(s))))
    mi = ex.mutual_information_matrix(model)
    for i, j in [(0, 11), (3, 4), (5, 9)]:
        err = max(err, abs(mi[i, j] - _dense_mi(v, i, j)))
    rep.emit(make_row(BENCH, "explain_bruteforce_n12_error", err, None, None, metric="abs_error_nats"))


def _dense_mi(v: np.ndarray, i: int, j: int) -> float:
    def s_of(sites: tuple[int, ...]) -> float:
        rest = [k for k in range(v.ndim) if k not in sites]
        m = np.transpose(v, list(sites) + rest).reshape(2 ** len(sites), -1)
        w = np.clip(np.linalg.eigvalsh(m @ m.T / np.sum(m * m)), 0, None)
        w = w[w > 0]
        return float(-np.sum(w * np.log(w)))

    return s_of((i,)) + s_of((j,)) - s_of((i, j))


# ---------------------------------------------------------------------- main


def _free_parameters(sizes: int, bonds: list[int], complex_: bool) -> int:
    """Real parameters of a tensor network: its entries less the gauge freedom of its bonds."""
    return (2 if complex_ else 1) * (sizes - sum(b * b for b in bonds))


def _recovery_problem(
    kind: str, n_sites: int, chi: int, seed: int, d: int = 2, dtype: str = "float64"
) -> tuple[Any, np.ndarray, np.ndarray]:
    import tnkit
    from tnkit.ttn import Tree

    rng = np.random.default_rng(seed)
    if kind == "mps":
        true = tnkit.MPS.random(n_sites, chi, phys_dim=d, seed=rng, dtype=dtype)
    else:
        true = tnkit.TTN.random(Tree.balanced(n_sites), 2, chi, seed=rng, dtype=dtype)
    return true, true.sample(20_000, seed=rng), true.sample(20_000, seed=rng)


def _born_log_prob(state: Any, X: np.ndarray) -> np.ndarray:
    _, log_abs = state.log_amplitudes(X)
    return 2.0 * log_abs - 2.0 * state.log_norm()


def _recovery_name(kind: str, n_sites: int, chi: int, d: int) -> str:
    return f"{kind}_n{n_sites}_chi{chi}" + ("" if d == 2 else f"_d{d}")


#: ``--recovery-dtype`` -> suffix of the case names (real cores: none).
_CORE_SUFFIX = {"float64": "", "complex128": "_complex"}


def case_recovery(rep: Reporter, quick: bool, n_seeds: int, kinds: tuple[str, ...] = ("mps", "ttn"),
                  only: tuple[str, ...] | None = None, first_seed: int = 0,
                  options: dict[str, Any] | None = None, dtype: str = "float64") -> None:
    """Default fits on data drawn from exact MPS / tree Born distributions of bond chi <= max_bond.

    ``options`` (``--recovery-options``) are passed to every model on top of the defaults;
    ``dtype`` (``--recovery-dtype``) is that of the true state's random cores.
    """
    import itertools

    from tnkit.ml import MPSBornMachine
    from tnkit.ml.ttn_born_machine import TTNBornMachine
    from tnkit.ttn import Tree

    grid = [("mps", 12, 2, 2), ("mps", 12, 4, 2)] if quick else [
        ("mps", n, c, 2) for n in (12, 16) for c in (2, 4, 8)] + [("mps", 12, 4, 3)] + [
        ("ttn", n, c, 2) for n in (12, 16) for c in (2, 4, 8)]
    seeds = [first_seed] if quick else list(range(first_seed, first_seed + n_seeds))
    grid = [g for g in grid if g[0] in kinds and (only is None or _recovery_name(*g) in only)]
    for kind, n_sites, chi, d in grid:
        configs = np.array(list(itertools.product(range(d), repeat=n_sites)), dtype=np.intp)
        gaps, kls, floors, seconds, cpu_seconds, sweeps, fitted_bonds = [], [], [], [], [], [], []
        for seed in seeds:
            true, X, X_test = _recovery_problem(kind, n_sites, chi, seed, d, dtype)
            if kind == "mps":
                model = MPSBornMachine(max_bond=chi, random_state=1000 + seed, **(options or {}))
            else:
                model = TTNBornMachine(max_bond=chi, tree=Tree.balanced(n_sites), random_state=1000 + seed,
                                       **(options or {}))
            tick, cpu_tick = time.perf_counter(), time.process_time()
            model.fit(X)
            seconds.append(time.perf_counter() - tick)
            cpu_seconds.append(time.process_time() - cpu_tick)
            grown = sum(row["sweeps"] for row in getattr(model, "growth_", []))
            sweeps.append(len(model.history_.nll) + grown)
            gaps.append(float(np.mean(_born_log_prob(true, X_test) - model.log_prob(X_test))))
            p = np.exp(_born_log_prob(true, configs))
            kls.append(float(np.sum(p * (np.log(p) - model.log_prob(configs)))))
            state = model.mps_ if kind == "mps" else model.ttn_
            fitted_bonds.append(int(state.max_bond_dim if kind == "ttn" else max(state.bond_dims)))
            # the floor of the model class that holds the truth (complex tensors of the true bonds); a fit
            # whose bonds stopped growing below it has fewer parameters, and is judged against the same floor
            bonds = [t.shape[2] for t in true.tensors[:-1]] if kind == "mps" else [
                true.bond_dim(v) for v in true.tree.bonds]
            floors.append(_free_parameters(sum(t.size for t in true.tensors), bonds, True) / (2 * len(X)))
        floor = float(np.median(floors))
        gap = float(np.median(gaps))
        rep.emit(make_row(
            BENCH, f"recovery_{_recovery_name(kind, n_sites, chi, d)}{_CORE_SUFFIX[dtype]}", gap,
            "finite_sample_floor", floor,
            metric="heldout_nll_gap_nats",
            gap_range=[min(gaps), max(gaps)], kl_median=float(np.median(kls)), kl_range=[min(kls), max(kls)],
            fit_seconds_median=float(np.median(seconds)), fit_seconds_range=[min(seconds), max(seconds)],
            fit_cpu_seconds_median=float(np.median(cpu_seconds)), fit_cpu_seconds_range=[min(cpu_seconds), max(cpu_seconds)],
            sweeps=sweeps, seeds=seeds, n_train=20_000, load_average=load_average(),
            goal="held-out gap within 0.02 nats of the floor", goal_met=bool(max(gaps) < floor + 0.02),
            options=options or "defaults", gaps=gaps, fitted_max_bond=fitted_bonds,
        ))


def _recovery_options(text: str | None) -> dict[str, Any] | None:
    """``"n_hops=0,hop_size=0.2"`` -> ``{"n_hops": 0, "hop_size": 0.2}`` (ints, floats or ``None``)."""
    if not text:
        return None
    out: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--recovery-options: expected KEY=VALUE items, got {item!r}")
        out[key.strip()] = None if value == "None" else (int(value) if value.lstrip("-").isdigit() else float(value))
    return out


def case_gradient_epoch(rep: Reporter) -> None:
    import tnkit
    from tnkit.ml import born_training
    from tnkit.ml.trainers import AdamSettings

    rng = np.random.default_rng(0)
    X = tnkit.MPS.random(12, 4, seed=rng).sample(20_000, seed=rng)
    for dtype in ("float64", "complex128"):
        start = tnkit.MPS.random(12, 4, seed=1, dtype=dtype)
        times, cpu = [], []
        for _ in range(6):
            tick, cpu_tick = time.perf_counter(), time.process_time()
            born_training.gradient_train(start, X, AdamSettings(n_epochs=1, batch_size=100, learning_rate=0.01),
                                         rng=rng)
            times.append(time.perf_counter() - tick)
            cpu.append(time.process_time() - cpu_tick)
        rep.emit(make_row(
            BENCH, f"gradient_epoch_n12_bond4_{dtype}_seconds", float(np.median(times[1:])), "previous_implementation",
            4.6, note="reference: the previous implementation on this machine, not re-run; epoch includes the "
            "full-data NLL", cpu_seconds=float(np.median(cpu[1:])), load_average=load_average(),
            goal="< 0.2 s of CPU time (the wall time depends on the machine's load)",
            goal_met=bool(np.median(cpu[1:]) < 0.2),
        ))


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0], default_threads="1")
    p.add_argument("--minutes", type=float, default=10.0, help="time cap per MNIST NLL run (default 10)")
    p.add_argument("--mnist-full-minutes", type=float, default=0.0,
                   help="also train on all 60,000 images for this many minutes (default: skip)")
    p.add_argument("--full-bond", type=int, default=24, help="max bond of the 60,000-image run (default 24)")
    p.add_argument("--full-batch", type=int, default=10_000,
                   help="images per sweep of the 60,000-image run (default 10,000)")
    p.add_argument("--compare-cpu-minutes", type=float, default=5.0,
                   help="CPU minutes each for the MNIST TTN-vs-MPS comparison (default 5)")
    p.add_argument("--full-learning-rate", type=float, default=0.005,
                   help="starting learning rate of the 60,000-image run (halved on plateaus; default 0.005)")
    p.add_argument("--figures", default=None, help="write the PNG figures into this folder (default: none)")
    add_data_argument(p)
    p.add_argument("--recovery-seeds", type=int, default=3, help="seeds of the recovery cases (default 3)")
    p.add_argument("--recovery-first-seed", type=int, default=0,
                   help="first data seed of the recovery cases (default 0; 3 gives data the defaults were not tuned on)")
    p.add_argument("--recovery-kinds", default="mps,ttn", help="models of the recovery cases (default mps,ttn)")
    p.add_argument("--recovery-cases", default=None,
                   help="only these recovery cases, comma-separated names such as mps_n16_chi8,mps_n12_chi4_d3")
    p.add_argument("--recovery-options", default=None,
                   help="model options on top of the defaults for the recovery cases, such as n_hops=0 (default: none)")
    p.add_argument("--recovery-dtype", choices=sorted(_CORE_SUFFIX), default="float64",
                   help="type of the true state's random cores in the recovery cases (default float64; "
                        "complex128 adds _complex to the case names)")
    args = p.parse_args(argv)
    use_data_dir(args.data)
    from _common import thread_limit

    rep = Reporter(args.json, columns=[
        ("case", lambda r: r["case"]), ("metric", lambda r: r["metric"]),
        ("tnkit", lambda r: fmt_float(r.get("tnkit"), 4)), ("reference", lambda r: str(r.get("reference"))),
        ("reference_value", lambda r: fmt_float(r.get("reference_value"), 4)),
        ("ratio", lambda r: fmt_float(r.get("ratio"))),
    ])
    cases = [
        ("bas4x4_nll_2sweeps", lambda: case_bas(rep)),
        ("bas4x4_ttn_vs_mps_nll_2sweeps", lambda: case_bas_tree_vs_chain(rep)),
        ("mnist1k_bond10_sweep_seconds", lambda: case_mnist_sweep_seconds(rep, args.quick)),
        ("mnist1k_bond10_crash_settings_nll", lambda: case_mnist_crash_settings(rep, args.quick)),
        ("sample_n784_bond64", lambda: case_sampling(rep, args.quick)),
        ("anomaly_mnist_digit0_auc", lambda: case_anomaly(rep, args.quick)),
        ("explain_bruteforce_n12_error", lambda: case_explain(rep)),
        ("gradient_epoch_n12_bond4_seconds", lambda: case_gradient_epoch(rep)),
        ("recovery", lambda: case_recovery(rep, args.quick, args.recovery_seeds,
                                           tuple(args.recovery_kinds.split(",")),
                                           None if args.recovery_cases is None else
                                           tuple(args.recovery_cases.split(",")), args.recovery_first_seed,
                                           _recovery_options(args.recovery_options), args.recovery_dtype)),
    ]
    if not args.quick:
        cases += [
            ("mnist1k_bond10_nll", lambda: case_mnist_nll(rep, 10, args.minutes)),
            ("mnist1k_bond100_nll", lambda: case_mnist_nll(rep, 100, args.minutes)),
            ("mnist1k_ttn_vs_mps_nll", lambda: case_mnist_tree_vs_chain(
                rep, args.compare_cpu_minutes,
                os.path.join(args.figures, "born_ttn_vs_mps_mnist.png") if args.figures else None)),
        ]
    if args.mnist_full_minutes > 0:
        cases.append(("mnist60k_nll", lambda: case_mnist_full(
            rep, args.full_bond, args.mnist_full_minutes, args.full_batch, args.full_learning_rate,
            os.path.join(args.figures, "born_mnist60k_curve.png") if args.figures else None)))
    with thread_limit(args.threads[0]):
        for name, run in cases:
            if case_selected(name, args.cases):
                log(f"{name} ...")
                run()
    rep.finish(footer=f"(timings under the machine's current load; see {os.path.basename(__file__)} docstring)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
