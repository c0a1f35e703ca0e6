"""Benchmark: tnkit's MPS and TTN classifiers against scikit-learn baselines (digits, MNIST 14x14).

Cases (conventions in ``benchmarks/_common.py``; results in ``docs/benchmarks.md``):

- ``digits_{mps_sweep,mps_adam,ttn_adam}_bond{D}``: scikit-learn 8x8 digits, 75/25 split
  with random_state 0. Test accuracy of MPSClassifier (two-site sweeps; Adam with
  cross-entropy) and TTNClassifier (Adam, tree over the 8x8 grid) next to logistic
  regression and an RBF SVM trained in the same process on the same split; plus the
  training time.
- ``mnist14_ttn_bond{D}_n{N}_e{E}``: TTNClassifier on the same MNIST split as the MPS
  cases (tree over the 14x14 grid), test error, training time and ms per sample-epoch.
- ``mnist14_mps_bond{D}_n{N}``: MNIST pooled to 14x14 (Stoudenmire & Schwab 2016), the
  first ``N`` training images, the full test set; test error per bond dimension, with
  the paper's 0.97% (bond 120, full training set) as the reference value.
- ``mnist14_mps_adam_{schedule}_bond{D}_n{N}_e{E}``: MPSClassifier trained by Adam (squared
  loss on the output direction, peak learning rate 0.002 with warm-up and cosine decay,
  batch 64, 6 epochs on all 60,000 images by default), test error on the full test set
  and the training accuracy after each epoch.
- ``mnist14_sweep_bond{D}``: seconds per sweep and per sample, with where the time goes
  (environment updates, local solver, SVD split).

Usage::

    python benchmarks/classifier.py --quick            # digits only (MPS sweep/Adam, TTN), ~1-2 minutes
    python benchmarks/classifier.py --mnist-train 10000 --bonds 10 20 40 --plot mnist.png
    python benchmarks/classifier.py --mnist-train 60000 --bonds 10 20 40 80 120   # full (hours)
    # the MNIST Adam case alone (bond 20, defaults as in docs/classifiers.md):
    python benchmarks/classifier.py --models none --ttn-bonds --speed-bonds --bonds --adam-bonds 20
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_data_argument, use_data_dir  # noqa: E402



def _emit(rows: list[dict], as_json: bool) -> None:
    for row in rows:
        if as_json:
            print(json.dumps(row), flush=True)
        else:
            ref = row.get("reference_value")
            ref_s = "n/a" if ref is None else f"{ref:.4g}"
            print(f"{row['case']:<32} {row['metric']:<16} tnkit={row['tnkit']:<10.4g} "
                  f"{row.get('reference') or '':<22} {ref_s}", flush=True)


def _digits_models(bond: int, n_sweeps: int, n_epochs: int, ttn_lr: float = 3e-4) -> dict:
    from tnkit.ml import MPSClassifier, TTNClassifier

    return {
        f"digits_mps_sweep_bond{bond}": MPSClassifier(max_bond=bond, n_sweeps=n_sweeps, random_state=0),
        f"digits_mps_adam_bond{bond}": MPSClassifier(max_bond=bond, solver="adam", loss="cross-entropy",
                                                     n_epochs=n_epochs, random_state=0),
        f"digits_ttn_adam_bond{bond}": TTNClassifier(max_bond=bond, n_epochs=n_epochs, learning_rate=ttn_lr,
                                                     random_state=0),
    }


def digits_case(bond: int, n_sweeps: int, n_epochs: int = 10, models: list[str] | None = None,
                ttn_lr: float = 3e-4) -> list[dict]:
    """Digits 75/25 (random_state 0): each tensor network beside logistic regression and the RBF SVM."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.svm import SVC

    from tnkit.datasets import load_digits

    X, y = load_digits()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0)
    t0 = time.perf_counter()
    logreg = LogisticRegression(max_iter=5000).fit(Xtr, ytr)
    t_lr = time.perf_counter() - t0
    t0 = time.perf_counter()
    svm = SVC(kernel="rbf", gamma="scale").fit(Xtr, ytr)
    t_svm = time.perf_counter() - t0
    rows = []
    for case, clf in _digits_models(bond, n_sweeps, n_epochs, ttn_lr).items():
        if models and not any(m in case for m in models):
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        clf.fit(Xtr, ytr)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        acc = clf.score(Xte, yte)
        base = {"benchmark": "classifier", "case": case}
        rows += [
            {**base, "metric": "test_accuracy", "tnkit": acc, "reference": "logistic_regression",
             "reference_value": logreg.score(Xte, yte)},
            {**base, "metric": "test_accuracy", "tnkit": acc, "reference": "rbf_svm",
             "reference_value": svm.score(Xte, yte)},
            {**base, "metric": "train_seconds", "tnkit": seconds, "reference": "rbf_svm", "reference_value": t_svm,
             "ratio": seconds / t_svm, "cpu_seconds": cpu, "loadavg": os.getloadavg()[0]},
            {**base, "metric": "train_seconds", "tnkit": seconds, "reference": "logistic_regression",
             "reference_value": t_lr, "ratio": seconds / t_lr},
        ]
    return rows


class _Timer:
    """Accumulates the time spent in named functions of the classifier's modules."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, module, name: str, label: str) -> None:
        fn = getattr(module, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - t0

        setattr(module, name, timed)


def _mnist_split(n_train: int, what: str):
    """``(train, test)`` MNIST 14x14 (first ``n_train`` training images, full test set), or None if absent."""
    from tnkit.datasets import default_mnist_dir, load_mnist

    if not default_mnist_dir().is_dir():
        print(f"skipping {what}: {default_mnist_dir()} not found", file=sys.stderr)
        return None
    return load_mnist(split="train", pool=2, n_samples=n_train), load_mnist(split="test", pool=2)


def _fit_and_score(clf, split, case: str) -> tuple[float, list[dict]]:
    """Fit ``clf`` on the training half of ``split``; test error and timing rows (wall, CPU, load)."""
    train, test = split
    t0, c0 = time.perf_counter(), time.process_time()
    clf.fit(train.data, train.target)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    err = 1.0 - clf.score(test.data, test.target)
    base = {"benchmark": "classifier", "case": case}
    return err, [
        {**base, "metric": "test_error", "tnkit": err, "reference": "paper_bond120_full", "reference_value": 0.0097,
         "ratio": err / 0.0097},
        {**base, "metric": "train_seconds", "tnkit": seconds, "reference": None, "reference_value": None,
         "cpu_seconds": cpu, "loadavg": os.getloadavg()[0]},
    ]


def mnist_cases(n_train: int, bonds: list[int], n_sweeps: int) -> tuple[list[dict], list[float]]:
    """MPSClassifier sweeps on MNIST 14x14 (first ``n_train`` images, full test set), one case per bond.

    Returns the rows and the test error per bond.
    """
    from tnkit.ml import MPSClassifier

    split = _mnist_split(n_train, "MNIST MPS sweeps")
    if split is None:
        return [], []
    rows, errors = [], []
    for bond in bonds:
        err, new = _fit_and_score(MPSClassifier(max_bond=bond, n_sweeps=n_sweeps, random_state=0), split,
                                  f"mnist14_mps_bond{bond}_n{n_train}_s{n_sweeps}")
        errors.append(err)
        rows += new
    return rows, errors


def sweep_speed_cases(n_train: int, bonds: list[int]) -> list[dict]:
    """One sweep at each bond from a model already grown to that bond, with a time breakdown."""
    import tnkit.ml.environments as envs
    import tnkit.ml.mps_classifier as mc
    from tnkit.datasets import default_mnist_dir, load_mnist
    from tnkit.ml import MPSClassifier

    if not default_mnist_dir().is_dir():
        return []
    train = load_mnist(split="train", pool=2, n_samples=n_train)
    rows = []
    for bond in bonds:
        clf = MPSClassifier(max_bond=bond, n_sweeps=1, init_bond=bond, random_state=0, warm_start=True)
        clf.fit(train.data, train.target)
        timer = _Timer()
        saved = {(m, n): getattr(m, n) for m, n in [(envs, "extend_left"), (envs, "extend_right"),
                                                    (mc, "_local_update"), (mc, "_split")]}
        timer.wrap(envs, "extend_left", "environments")
        timer.wrap(envs, "extend_right", "environments")
        timer.wrap(mc, "_local_update", "local_solver")
        timer.wrap(mc, "_split", "svd_split")
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            clf.partial_fit(train.data, train.target)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        finally:
            for (m, n), fn in saved.items():
                setattr(m, n, fn)
        base = {"benchmark": "classifier", "case": f"mnist14_sweep_bond{bond}_n{n_train}"}
        breakdown = {k: round(v, 3) for k, v in timer.seconds.items()}
        breakdown["other (trial losses, merges, bookkeeping)"] = round(seconds - sum(timer.seconds.values()), 3)
        rows.append({**base, "metric": "seconds_per_sweep", "tnkit": seconds, "reference": None,
                     "reference_value": None, "cpu_seconds": cpu, "loadavg": os.getloadavg()[0],
                     "breakdown": breakdown})
        rows.append({**base, "metric": "ms_per_sample_sweep", "tnkit": 1e3 * seconds / n_train,
                     "reference": None, "reference_value": None})
    return rows


def mnist_adam_cases(n_train: int, bonds: list[int], n_epochs: int, learning_rate: float, batch_size: int,
                     schedule: str = "cosine", loss: str = "squared") -> tuple[list[dict], list[float]]:
    """MPSClassifier with the Adam solver on the MNIST split of :func:`mnist_cases`; rows and test error per bond.

    Each case also reports the training accuracy after every epoch (``train_accuracy``).
    """
    from tnkit.ml import MPSClassifier

    split = _mnist_split(n_train, "MNIST MPS Adam")
    if split is None:
        return [], []
    rows, errors = [], []
    for bond in bonds:
        clf = MPSClassifier(max_bond=bond, solver="adam", loss=loss, n_epochs=n_epochs, learning_rate=learning_rate,
                            learning_rate_schedule=schedule, batch_size=batch_size, random_state=0)
        err, new = _fit_and_score(clf, split, f"mnist14_mps_adam_{schedule}_bond{bond}_n{n_train}_e{n_epochs}")
        new[0]["train_accuracy"] = [round(h["accuracy"], 4) for h in clf.history_]
        errors.append(err)
        rows += new
    return rows, errors


def _plot(path: str, sweeps: tuple[list[int], list[float], int], adam: tuple[list[int], list[float], int]) -> None:
    """Error against bond for the sweep and Adam cases that ran (paper's 0.97% as the reference line)."""
    series = {f"MPS, {name}, {n:,} images": (b, e) for name, (b, e, n) in
              (("Adam", adam), ("2 sweeps", sweeps)) if e}
    _plot_series(path, series)


def _plot_series(path: str, series: dict[str, tuple[list[int], list[float]]]) -> None:
    from tnkit.ml.plots import plot_accuracy_vs_bond

    if series:
        (label, (bonds, errors)), *rest = series.items()
        plot_accuracy_vs_bond(bonds, errors, path, label=label, extra=dict(rest))


_MNIST_MPS_CASE = re.compile(r"^mnist14_mps_(?:(?P<solver>.+)_)?bond(?P<bond>\d+)_n(?P<n>\d+)_(?P<length>\w+)$")


def plot_from_json(paths: list[str], out: str) -> dict[str, tuple[list[int], list[float]]]:
    """Error-vs-bond plot from the ``test_error`` rows of earlier ``--json`` runs (one series per setting).

    Long cases are best run one bond at a time on a shared machine; this joins them.
    """
    series: dict[str, dict[int, float]] = defaultdict(dict)
    for path in paths:
        with open(path) as fh:
            for line in fh:
                row = json.loads(line) if line.startswith("{") else {}
                match = _MNIST_MPS_CASE.match(row.get("case", ""))
                if match and row.get("metric") == "test_error":
                    length = match["length"]
                    length = {"e": f"{length[1:]} epochs", "s": f"{length[1:]} sweeps"}.get(length[0], length)
                    solver = (match["solver"] or "sweeps").replace("_", " ")
                    name = f"MPS {solver}, {int(match['n']):,} images, {length}"
                    series[name][int(match["bond"])] = float(row["tnkit"])
    joined = {name: (sorted(v), [v[b] for b in sorted(v)]) for name, v in series.items()}
    _plot_series(out, joined)
    return joined


def mnist_ttn_cases(n_train: int, bonds: list[int], n_epochs: int, learning_rate: float = 3e-4) -> list[dict]:
    """TTNClassifier on the MNIST 14x14 split of :func:`mnist_cases` (tree over the 14x14 grid)."""
    from tnkit.ml import TTNClassifier

    split = _mnist_split(n_train, "MNIST TTN")
    if split is None:
        return []
    rows = []
    for bond in bonds:
        clf = TTNClassifier(max_bond=bond, n_epochs=n_epochs, learning_rate=learning_rate, random_state=0)
        rows += _fit_and_score(clf, split, f"mnist14_ttn_bond{bond}_n{n_train}_e{n_epochs}")[1]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="digits only (about a minute on a quiet machine)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line, nothing else on stdout")
    parser.add_argument("--digits-bond", type=int, default=20, help="max_bond of the digits models (default 20)")
    parser.add_argument("--digits-sweeps", type=int, default=4, help="sweeps of the digits MPS (default 4)")
    parser.add_argument("--digits-epochs", type=int, default=10, help="Adam epochs (MPS adam, TTN)")
    parser.add_argument("--models", nargs="+", default=None,
                        help="digits cases to run, by substring (e.g. mps_sweep ttn); default all")
    parser.add_argument("--ttn-bonds", type=int, nargs="*", default=[10], help="MNIST TTN bonds (none: skip)")
    parser.add_argument("--ttn-epochs", type=int, default=2, help="Adam epochs of the MNIST TTN (default 2)")
    parser.add_argument("--ttn-lr", type=float, default=3e-4, help="TTN Adam step (lower it as the bond grows)")
    parser.add_argument("--skip-mps-mnist", action="store_true", help="MNIST: only the TTN cases")
    parser.add_argument("--mnist-train", type=int, default=10000, help="training images used (60000: all)")
    parser.add_argument("--mnist-sweeps", type=int, default=2, help="sweeps of each MNIST MPS (default 2)")
    parser.add_argument("--bonds", type=int, nargs="*", default=[10, 20, 40],
                        help="max_bond values of the MNIST sweep cases (none: skip)")
    parser.add_argument("--speed-bonds", type=int, nargs="*", default=[20, 40],
                        help="bonds of the sweep-speed cases (one timed sweep after one untimed one)")
    parser.add_argument("--plot", default=None, help="write the error-vs-bond plot here")
    parser.add_argument("--plot-from", nargs="+", default=None, metavar="JSONL",
                        help="only draw --plot from the MNIST test_error rows of earlier --json outputs")
    parser.add_argument("--adam-bonds", type=int, nargs="*", default=[20],
                        help="MNIST bonds of the MPS Adam solver (none: skip)")
    parser.add_argument("--adam-train", type=int, default=60000,
                        help="training images of the MPS Adam cases (default all 60,000)")
    parser.add_argument("--speed-train", type=int, default=5000, help="training images of the sweep-speed cases")
    parser.add_argument("--adam-epochs", type=int, default=6, help="Adam epochs of the MNIST MPS (default 6)")
    parser.add_argument("--adam-lr", type=float, default=0.002,
                        help="peak Adam step of the MNIST MPS (default 0.002; constant 0.003 diverged on 60,000 images)")
    parser.add_argument("--adam-schedule", choices=["constant", "cosine"], default="cosine",
                        help="learning-rate schedule of the MNIST MPS Adam (default cosine, with 3%% warm-up)")
    parser.add_argument("--adam-loss", choices=["squared", "cross-entropy"], default="squared",
                        help="loss of the MNIST MPS Adam (default squared, on the output direction)")
    parser.add_argument("--adam-batch", type=int, default=64, help="minibatch of the MNIST MPS Adam (default 64)")
    add_data_argument(parser)
    args = parser.parse_args(argv)
    use_data_dir(args.data)
    if args.plot_from:
        if not args.plot:
            parser.error("--plot-from needs --plot")
        for name, (bonds, errors) in plot_from_json(args.plot_from, args.plot).items():
            print(f"{name}: " + ", ".join(f"bond {b} {100 * e:.2f}%" for b, e in zip(bonds, errors)), file=sys.stderr)
        return 0
    _emit(digits_case(args.digits_bond, args.digits_sweeps, args.digits_epochs, args.models, args.ttn_lr), args.json)
    if not args.quick:
        if not args.skip_mps_mnist:
            if args.speed_bonds:
                _emit(sweep_speed_cases(min(args.mnist_train, args.speed_train), args.speed_bonds), args.json)
            rows, sweep_errors = mnist_cases(args.mnist_train, args.bonds, args.mnist_sweeps)
            _emit(rows, args.json)
            adam_errors: list[float] = []
            if args.adam_bonds:
                rows, adam_errors = mnist_adam_cases(args.adam_train, args.adam_bonds, args.adam_epochs, args.adam_lr,
                                                     args.adam_batch, args.adam_schedule, args.adam_loss)
                _emit(rows, args.json)
            if args.plot:
                _plot(args.plot, (args.bonds, sweep_errors, args.mnist_train),
                      (args.adam_bonds, adam_errors, args.adam_train))
        if args.ttn_bonds:
            _emit(mnist_ttn_cases(args.mnist_train, args.ttn_bonds, args.ttn_epochs, args.ttn_lr), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
