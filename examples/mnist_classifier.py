"""Train MPS classifiers on MNIST 14x14 at several bond dimensions and save the error-vs-bond plot.

Reads the IDX files from shared/data/mnist beside the checkout (or --data, or $TNKIT_MNIST_DIR); nothing is downloaded.

    python examples/mnist_classifier.py --n-train 5000 --bonds 10 20 --out mnist_bond.png
    # the settings of the 2% run in docs/classifiers.md (Adam, cosine schedule, all images):
    python examples/mnist_classifier.py --solver adam --n-train 60000 --epochs 6 --bonds 20
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from tnkit.datasets import default_mnist_dir, load_mnist
from tnkit.ml import MPSClassifier
from tnkit.ml.plots import plot_accuracy_vs_bond, plot_entanglement, plot_feature_importance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=None, help="directory with the MNIST IDX files")
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--bonds", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--solver", choices=["sweep", "adam"], default="sweep")
    parser.add_argument("--sweeps", type=int, default=2, help="sweeps (--solver sweep)")
    parser.add_argument("--epochs", type=int, default=6, help="Adam epochs (--solver adam)")
    parser.add_argument("--learning-rate", type=float, default=0.002, help="peak Adam step of the cosine schedule")
    parser.add_argument("--out", default="mnist_accuracy_vs_bond.png")
    args = parser.parse_args(argv)
    directory = args.data or default_mnist_dir()
    try:
        train = load_mnist(directory, "train", pool=2, n_samples=args.n_train)
        test = load_mnist(directory, "test", pool=2)
    except FileNotFoundError as err:
        print(f"skipping: MNIST is not available ({err}); put the four IDX files in {directory}", file=sys.stderr)
        return 0
    errors = []
    for bond in args.bonds:
        cpu = time.process_time()
        if args.solver == "sweep":
            clf = MPSClassifier(max_bond=bond, n_sweeps=args.sweeps, random_state=0, verbose=True)
        else:
            clf = MPSClassifier(max_bond=bond, solver="adam", n_epochs=args.epochs, learning_rate=args.learning_rate,
                                learning_rate_schedule="cosine", batch_size=64, random_state=0, verbose=True)
        clf.fit(train.data, train.target)
        errors.append(1.0 - clf.score(test.data, test.target))
        print(f"bond {bond}: test error {100 * errors[-1]:.2f}% ({time.process_time() - cpu:.0f} s CPU)")
    print("saved", plot_accuracy_vs_bond(args.bonds, errors, args.out))
    print("saved", plot_entanglement(clf.entanglement_entropy(), "mnist_entanglement.png"))
    importance = clf.feature_importance(test.data[:1000], test.target[:1000])
    print("saved", plot_feature_importance(importance, (14, 14), "mnist_importance.png"))
    print("most important pixels (row, col):", [divmod(int(i), 14) for i in np.argsort(importance)[::-1][:5]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
