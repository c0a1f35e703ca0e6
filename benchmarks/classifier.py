"""Benchmark: tnkit's MPS and TTN classifiers, with their defaults, against scikit-learn baselines.

Cases (conventions in BENCHMARKS.md; every tnkit model is built with its defaults and a seed):

- ``digits_{mps,ttn}_default``: scikit-learn 8x8 digits, 75/25 split with random_state 0.
  Test accuracy of ``MPSClassifier(random_state=0)`` and ``TTNClassifier(random_state=0)``
  next to logistic regression and an RBF SVM fitted in the same process on the same
  split, and the fit times (wall and CPU, with the load average).
- ``mnist14_mps_default_seed{S}_threads{T}``: ``MPSClassifier(random_state=S)`` on all
  60,000 MNIST training images pooled to 14x14, error on the 10,000 test images. Each
  fit runs in a fresh process with ``TNKIT_NUM_THREADS=T`` (and the BLAS variables), as
  a user's script would; a summary row gives the median and range over seeds and
  threads. Reference: the paper's 0.97% (bond 120, sweeps), copied from the paper.
- ``mnist14_long_{member}_seed{S}`` (``--long``): the option set ``LONG_RECIPE`` towards the
  paper's 1.0%: ``TTNClassifier(max_bond=10, n_epochs=10, random_state=S)`` on the training
  images plus five copies from ``tnkit.datasets.augment_images``, each fit in its own fresh
  process (one BLAS thread; two seeds at a time, one per core), error on the 10,000 test images
  of the mean ``predict_proba`` over nine shifted views of each (``tnkit.datasets.shifted_views``),
  with the error of the unshifted images beside it.
- ``mnist14_ttn_default_seed{S}_threads{T}`` (``--ttn``): ``TTNClassifier(random_state=S)``, same protocol.
- ``idx_curve_{name}_n{N}``: a learning curve on any 10-class set in the MNIST IDX format
  (``--idx DIR``, pooled to 14x14): defaults against logistic regression on the same
  pixels, for the first N training images (``--curve-sizes``), error on the first
  ``--curve-test`` test images.

Usage::

    python benchmarks/classifier.py --quick                 # digits only (a few minutes under load)
    python benchmarks/classifier.py --json > classifier.jsonl   # digits + MNIST, 3 seeds x 1 and 2 threads
    python benchmarks/classifier.py --skip-digits --seeds 0 --threads 1 --idx /path/to/fashion
    python benchmarks/classifier.py --json --skip-digits --skip-mnist --long --seeds 0 1   # ~35 min each, 2 at once

MNIST is read from ``--data``, the MNIST folder or the data folder holding ``mnist/``
(default ``$TNKIT_DATA/mnist``, see ``tnkit.datasets.default_mnist_dir``); cases whose
data are missing are skipped with a printed reason. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # this checkout's tnkit, here and in child processes

from _common import Reporter, base_parser, fmt_float, load_average, log, make_row, run_python  # noqa: E402

PAPER_ERROR = 0.0097  # Stoudenmire & Schwab (2016), bond 120, copied from the paper

#: The option set towards the paper's 1.0% (``--long``): the training images plus
#: ``augment["n_copies"]`` copies made by ``tnkit.datasets.augment_images`` (at 28x28, seed
#: ``1000 + seed``, then pooled to 14x14), and each member model fitted on them in its own fresh
#: process (two at a time: one per core). Each member predicts the mean of its ``predict_proba`` over
#: the ``(2 * test_shifts + 1) ** 2`` whole-pixel shifts of each 28x28 test image, pooled
#: (``tnkit.datasets.shifted_views``; 0: the test images only); with several members the prediction is
#: their soft vote (mean of those). Figures in docs/classifiers.md.
LONG_RECIPE = {
    "augment": {"n_copies": 5, "max_shift": 2.0, "max_rotation": 10.0, "max_scale": 0.1},
    "test_shifts": 1,
    "members": [("TTNClassifier", {"max_bond": 10, "n_epochs": 10})],
}


def _row(case: str, metric: str, value, reference, reference_value, **extra) -> dict:
    """A result row; accuracy is higher-is-better (no ratio), errors and seconds lower-is-better."""
    return make_row("classifier", case, value, reference, reference_value, metric=metric,
                    lower_is_better=metric != "test_accuracy", **extra)


def _timed_fit(clf, X, y) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    clf.fit(X, y)
    return time.perf_counter() - t0, time.process_time() - c0


def digits_cases() -> list[dict]:
    """Defaults on digits 75/25 beside logistic regression and the RBF SVM."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.svm import SVC

    from tnkit.datasets import load_digits
    from tnkit.ml import MPSClassifier, TTNClassifier

    X, y = load_digits()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0)
    logreg, svm = LogisticRegression(max_iter=5000), SVC(kernel="rbf", gamma="scale")
    t_lr, _ = _timed_fit(logreg, Xtr, ytr)
    t_svm, _ = _timed_fit(svm, Xtr, ytr)
    rows = []
    for case, clf in (("digits_mps_default", MPSClassifier(random_state=0)),
                      ("digits_ttn_default", TTNClassifier(random_state=0))):
        log(f"{case} ...")
        seconds, cpu = _timed_fit(clf, Xtr, ytr)
        acc = clf.score(Xte, yte)
        rows += [
            _row(case, "test_accuracy", acc, "logistic_regression", logreg.score(Xte, yte)),
            _row(case, "test_accuracy", acc, "rbf_svm", svm.score(Xte, yte)),
            _row(case, "train_seconds", seconds, "rbf_svm", t_svm, cpu_seconds=round(cpu, 2),
                     loadavg=load_average()),
            _row(case, "train_seconds", seconds, "logistic_regression", t_lr),
        ]
    return rows


_FIT_IN_FRESH_PROCESS = """
import json, os, time
from tnkit.datasets import load_mnist
from tnkit.ml import {estimator}
d = {data!r}
train, test = load_mnist(d, "train", pool=2), load_mnist(d, "test", pool=2)
clf = {estimator}(random_state={seed}, **{options!r})
t0, c0 = time.perf_counter(), time.process_time()
clf.fit(train.data, train.target)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({{"error": 1.0 - clf.score(test.data, test.target), "wall": wall, "cpu": cpu,
                  "load": os.getloadavg()[0], "epochs": clf.n_epochs_,
                  "train_accuracy": [round(h["accuracy"], 4) for h in clf.history_]}}))
"""


def _fresh_fit(data: Path, seed: int, threads: int, options: dict, estimator: str = "MPSClassifier") -> dict:
    """Fit ``estimator`` on MNIST 14x14 in a new interpreter (the repository first on its path)."""
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
    code += _FIT_IN_FRESH_PROCESS.format(data=str(data), seed=seed, options=options, estimator=estimator)
    os.environ["TNKIT_NUM_THREADS"], previous = str(threads), os.environ.get("TNKIT_NUM_THREADS")
    try:
        out = run_python(code, threads=threads, timeout=4 * 3600)
    finally:
        if previous is None:
            del os.environ["TNKIT_NUM_THREADS"]
        else:
            os.environ["TNKIT_NUM_THREADS"] = previous
    return json.loads(out.strip().splitlines()[-1])


_FIT_MEMBER = """
import json, os, time
import numpy as np
from tnkit.datasets import augment_images, load_mnist, pool_images, shifted_views
from tnkit.ml import {estimator}
d = {data!r}
train, test = load_mnist(d, "train", flatten=False), load_mnist(d, "test", flatten=False)
t0, c0 = time.perf_counter(), time.process_time()
X, y = augment_images(train.data, train.target, seed={augment_seed}, **{augment!r})
X = pool_images(X, 2).reshape(len(X), -1)
clf = {estimator}(random_state={seed}, **{options!r}).fit(X, y)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
c1 = time.process_time()
views = [clf.predict_proba(v) for v in shifted_views(test.data, max_shift={test_shifts}, pool=2)]
proba, predict_cpu = np.mean(views, axis=0), time.process_time() - c1
np.save({out!r}, proba)
error = lambda p: float(np.mean(clf.classes_[p.argmax(axis=1)] != test.target))
print(json.dumps({{"error": error(proba), "error_unshifted": error(views[0]), "wall": wall, "cpu": cpu,
                  "predict_cpu": predict_cpu, "load": os.getloadavg()[0], "epochs": clf.n_epochs_,
                  "train_accuracy": [round(h["accuracy"], 4) for h in clf.history_]}}))
"""


def long_cases(data: Path, seeds: list[int], recipe: dict = LONG_RECIPE, *, workers: int = 2) -> list[dict]:
    """The long option set: every (seed, member) fit in its own fresh process, ``workers`` at once.

    Augmentation and fit are timed together in each process (one BLAS thread). With several
    members, a soft-vote row per seed follows; its wall time on two idle cores is about the
    largest member CPU time when the members run side by side.
    """
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from tnkit.datasets import load_mnist

    target = load_mnist(data, "test").target
    repo = str(Path(__file__).resolve().parents[1])
    members = recipe["members"]
    rows, errors = [], []
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [(seed, i) for seed in seeds for i in range(len(members))]

        def run(job: tuple[int, int]) -> dict:
            seed, i = job
            estimator, options = members[i]
            log(f"mnist14_long_{estimator.lower()}_seed{seed} ...")
            code = f"import sys; sys.path.insert(0, {repo!r})\n" + _FIT_MEMBER.format(
                data=str(data), estimator=estimator, seed=seed, options=options, augment=recipe["augment"],
                augment_seed=1000 + seed, test_shifts=recipe["test_shifts"],
                out=str(Path(tmp) / f"seed{seed}_member{i}.npy"))
            return json.loads(run_python(code, threads=1, timeout=4 * 3600).strip().splitlines()[-1])

        with ThreadPoolExecutor(workers) as pool:
            results = dict(zip(jobs, pool.map(run, jobs), strict=True))
        for seed in seeds:
            for i, (estimator, options) in enumerate(members):
                r, case = results[seed, i], f"mnist14_long_{estimator.lower()}_seed{seed}"
                rows += [
                    _row(case, "test_error", r["error"], "paper_bond120", PAPER_ERROR, epochs=r["epochs"],
                         train_accuracy=r["train_accuracy"], options=options, augment=recipe["augment"],
                         test_shifts=recipe["test_shifts"], error_unshifted=r["error_unshifted"]),
                    _row(case, "train_seconds", r["wall"], None, None, cpu_seconds=round(r["cpu"], 1),
                         predict_cpu_seconds=round(r["predict_cpu"], 1), loadavg=round(r["load"], 2)),
                ]
            if len(members) == 1:
                errors.append(results[seed, 0]["error"])
                continue
            proba = np.mean([np.load(Path(tmp) / f"seed{seed}_member{i}.npy") for i in range(len(members))],
                            axis=0)
            errors.append(float(np.mean(proba.argmax(axis=1) != target)))
            rows.append(_row(f"mnist14_long_vote_seed{seed}", "test_error", errors[-1], "paper_bond120",
                             PAPER_ERROR, members=[e for e, _ in members],
                             cpu_seconds=round(max(results[seed, i]["cpu"] for i in range(len(members))), 1)))
    if len(errors) > 1:
        rows.append(_row("mnist14_long_summary", "test_error", statistics.median(errors),
                         "paper_bond120", PAPER_ERROR, min=min(errors), max=max(errors), runs=len(errors),
                         seeds=seeds))
    return rows


def _has_mnist(folder: Path) -> bool:
    """Whether ``folder`` holds MNIST's training images (gzipped or not)."""
    names = ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte")
    return any((folder / name).is_file() for name in names)


def mnist_folder(data: Path) -> Path:
    """``data`` if it holds MNIST, else its ``mnist/`` if that does (a data root), else ``data``."""
    return data / "mnist" if not _has_mnist(data) and _has_mnist(data / "mnist") else data


def mnist_cases(data: Path, seeds: list[int], threads: list[int], *, name: str = "default",
                options: dict | None = None, estimator: str = "MPSClassifier") -> list[dict]:
    """MNIST 14x14 with the defaults (plus ``options``), one fresh process per seed and thread count."""
    rows, errors = [], []
    kind = {"MPSClassifier": "mps", "TTNClassifier": "ttn"}[estimator]
    for seed in seeds:
        for t in threads:
            case = f"mnist14_{kind}_{name}_seed{seed}_threads{t}"
            log(f"{case} ...")
            r = _fresh_fit(data, seed, t, options or {}, estimator)
            errors.append(r["error"])
            rows += [
                _row(case, "test_error", r["error"], "paper_bond120", PAPER_ERROR,
                         epochs=r["epochs"], train_accuracy=r["train_accuracy"], options=options or {}),
                _row(case, "train_seconds", r["wall"], None, None, cpu_seconds=round(r["cpu"], 1),
                         loadavg=round(r["load"], 2)),
            ]
    if len(errors) > 1:
        rows.append(_row(f"mnist14_{kind}_{name}_summary", "test_error",
                             statistics.median(errors), "paper_bond120", PAPER_ERROR, min=min(errors),
                             max=max(errors), runs=len(errors), seeds=seeds, threads=threads))
    return rows


def idx_curve_cases(directory: Path, sizes: list[int], n_test: int, seed: int) -> list[dict]:
    """Learning curve on a 10-class IDX image set pooled to 14x14: defaults against logistic regression."""
    from sklearn.linear_model import LogisticRegression

    from tnkit.datasets import load_mnist
    from tnkit.ml import MPSClassifier

    train = load_mnist(directory, "train", pool=2, n_samples=max(sizes))
    test = load_mnist(directory, "test", pool=2, n_samples=n_test)
    rows = []
    for n in sizes:
        case = f"idx_curve_{directory.name}_n{n}"
        log(f"{case} ...")
        logreg = LogisticRegression(max_iter=3000)
        _timed_fit(logreg, train.data[:n], train.target[:n])
        clf = MPSClassifier(random_state=seed)
        seconds, cpu = _timed_fit(clf, train.data[:n], train.target[:n])
        rows += [
            _row(case, "test_accuracy", clf.score(test.data, test.target), "logistic_regression",
                     logreg.score(test.data, test.target), epochs=clf.n_epochs_),
            _row(case, "train_seconds", seconds, None, None, cpu_seconds=round(cpu, 1),
                     loadavg=load_average()),
        ]
    return rows


def _emit_all(reporter: Reporter, rows: list[dict]) -> None:
    for row in rows:
        reporter.emit(row)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], default_threads="1,2")
    parser.add_argument("--data", type=Path, default=None,
                        help="MNIST directory, or the data directory holding mnist/ as the other benchmarks "
                        "take it (default $TNKIT_DATA/mnist)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="random_state values (MNIST)")
    parser.add_argument("--skip-digits", action="store_true", help="no digits cases")
    parser.add_argument("--skip-mnist", action="store_true", help="no MNIST default cases")
    parser.add_argument("--long", action="store_true", help="also the long option set LONG_RECIPE (about an hour)")
    parser.add_argument("--ttn", action="store_true", help="also TTNClassifier's defaults on MNIST (same protocol)")
    parser.add_argument("--idx", type=Path, nargs="*", default=[], help="IDX image sets for the learning curve")
    parser.add_argument("--curve-sizes", type=int, nargs="+", default=[1000, 3000, 10000])
    parser.add_argument("--curve-test", type=int, default=5000, help="test images of the learning curve")
    args = parser.parse_args(argv)
    from tnkit.datasets import default_mnist_dir

    reporter = Reporter(args.json, [
        ("case", lambda r: r["case"]), ("metric", lambda r: r["metric"]),
        ("tnkit", lambda r: fmt_float(r["tnkit"], 4)), ("reference", lambda r: r.get("reference") or "-"),
        ("reference_value", lambda r: fmt_float(r.get("reference_value"), 4)),
        ("cpu_s", lambda r: fmt_float(r.get("cpu_seconds"), 1)), ("load", lambda r: fmt_float(r.get("loadavg"), 1)),
    ])
    if not args.skip_digits:
        _emit_all(reporter, digits_cases())
    data = mnist_folder(args.data or default_mnist_dir())
    if not args.quick and not (args.skip_mnist and not args.long and not args.ttn):
        if not _has_mnist(data):
            log(f"skipping the MNIST cases: no MNIST files in {data} (pass --data or set TNKIT_DATA)")
        else:
            if not args.skip_mnist:
                _emit_all(reporter, mnist_cases(data, args.seeds, args.threads))
            if args.ttn:
                _emit_all(reporter, mnist_cases(data, args.seeds, args.threads, estimator="TTNClassifier"))
            if args.long:
                _emit_all(reporter, long_cases(data, args.seeds))
    for directory in args.idx:
        _emit_all(reporter, idx_curve_cases(directory, args.curve_sizes, args.curve_test, args.seeds[0]))
    reporter.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
