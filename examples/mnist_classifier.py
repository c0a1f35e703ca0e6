"""Train MPS classifiers (defaults) on MNIST 14x14 at several bond dimensions; save three figures to --out.

Reads the four IDX files from --data (or $TNKIT_DATA/mnist, see tnkit.datasets.default_mnist_dir);
nothing is downloaded. Any 10-class 28x28 set in the same format (Fashion-MNIST) works too.

    python examples/mnist_classifier.py                          # defaults, bond 10, all 60,000 images
    python examples/mnist_classifier.py --n-train 10000 --bonds 10 20 --out /tmp/mnist

Writes ``mnist_accuracy_vs_bond.png``, ``mnist_entanglement.png`` (per bond of the last model)
and ``mnist_importance.png`` (occlusion sensitivity per pixel) into --out, nothing elsewhere.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from tnkit.datasets import default_mnist_dir, load_mnist
from tnkit.ml import MPSClassifier
from tnkit.ml.plots import plot_accuracy_vs_bond, plot_entanglement, plot_feature_importance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None,
                        help="directory with the four IDX files (default: $TNKIT_DATA/mnist)")
    parser.add_argument("--n-train", type=int, default=60000, help="first N training images (default all)")
    parser.add_argument("--bonds", type=int, nargs="+", default=[10], help="max_bond values (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="random_state of the classifiers")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "output",
                        help="directory for the figures (default examples/output)")
    args = parser.parse_args(argv)
    directory = args.data or default_mnist_dir()
    try:
        train = load_mnist(directory, "train", pool=2, n_samples=args.n_train)
        test = load_mnist(directory, "test", pool=2)
    except FileNotFoundError as err:
        print(f"skipping: {err}", file=sys.stderr)
        return 0
    errors = []
    for bond in args.bonds:
        wall, cpu = time.perf_counter(), time.process_time()
        clf = MPSClassifier(max_bond=bond, random_state=args.seed, verbose=True).fit(train.data, train.target)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        errors.append(1.0 - clf.score(test.data, test.target))
        print(f"bond {bond}: test error {100 * errors[-1]:.2f}% after {clf.n_epochs_} epochs "
              f"({cpu:.0f} s CPU, {wall:.0f} s wall)")
    args.out.mkdir(parents=True, exist_ok=True)
    print("saved", plot_accuracy_vs_bond(args.bonds, errors, args.out / "mnist_accuracy_vs_bond.png"))
    print("saved", plot_entanglement(clf.entanglement_entropy(), args.out / "mnist_entanglement.png"))
    importance = clf.feature_importance(test.data[:1000], test.target[:1000])
    print("saved", plot_feature_importance(importance, (14, 14), args.out / "mnist_importance.png"))
    print("most important pixels (row, col):", [divmod(int(i), 14) for i in np.argsort(importance)[::-1][:5]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
