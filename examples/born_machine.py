"""Generative modelling with an MPS Born machine: bars-and-stripes and binarized MNIST.

1. Bars and stripes 4x4 (the 30 patterns): two sweeps reach the optimal NLL ln 30;
   10,000 exact samples are checked for validity and coverage, and the bottom half of
   each pattern is inpainted from its top half.
2. Binarized MNIST (threshold 0.5, 28x28): a Born machine at ``--bond`` is trained on the
   first ``--n-train`` training images for ``--sweeps`` sweeps; the training and
   held-out NLL are printed, and samples and inpaintings (the bottom half of test
   images completed greedily and by sampling from the exact conditional) are drawn.

3. The same MNIST images with a tree tensor network Born machine
   (:class:`tnkit.ml.ttn_born_machine.TTNBornMachine` on ``Tree.grid(28, 28)``) at
   ``--ttn-bond`` for ``--ttn-sweeps`` sweeps: training and held-out NLL beside the MPS,
   the parameter counts of both, exact samples and greedy completions of the bottom halves.

Writes ``born_machine.png`` (a grid: BAS samples and inpaintings, MNIST samples,
MNIST inpaintings, TTN samples) and the entanglement entropy per bond of the MNIST model to
``--out`` (default ``examples/output``). The defaults run in about a minute on two
cores (MNIST training NLL about 98 nats after 20 sweeps at bond 10); ``--skip-mnist``
keeps only the first part (seconds). MNIST is read from ``DIR/mnist`` with ``--data DIR``
or ``TNKIT_DATA=DIR`` (the four IDX files ``train-images-idx3-ubyte.gz`` and so on; see
:func:`tnkit.datasets.load_mnist`); without them the MNIST parts are skipped.

Run ``python examples/born_machine.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from tnkit.datasets import bars_and_stripes, binarize, load_mnist
from tnkit.ml import MPSBornMachine
from tnkit.ml.explain import entanglement_entropies
from tnkit.ml.ttn_born_machine import TTNBornMachine

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the examples' shared _data.py
from _data import add_data_argument, add_out_argument, mnist_dir  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bond", type=int, default=10, help="max bond of the MNIST model (default 10)")
    p.add_argument("--n-train", type=int, default=1000, help="MNIST training images (default 1000)")
    p.add_argument("--sweeps", type=int, default=20, help="MNIST training sweeps (default 20)")
    p.add_argument("--ttn-bond", type=int, default=8, help="bond of the MNIST tree model (default 8)")
    p.add_argument("--ttn-sweeps", type=int, default=4, help="MNIST tree training sweeps (default 4; 0 skips)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--skip-mnist", action="store_true", help="only the bars-and-stripes part")
    add_data_argument(p)
    add_out_argument(p)
    return p.parse_args(argv)


def bars_and_stripes_part(seed: int) -> dict[str, np.ndarray]:
    X = bars_and_stripes(4)
    tick = time.perf_counter()
    model = MPSBornMachine(max_bond=32, init_bond=16, n_sweeps=2, random_state=seed).fit(X)
    print(f"bars and stripes 4x4: NLL {-model.score(X):.5f} (ln 30 = {math.log(30):.5f}) after "
          f"{len(model.history_.nll)} sweeps, {time.perf_counter() - tick:.2f} s, bond {model.mps_.max_bond_dim}")
    samples = model.sample(10_000, random_state=seed)
    valid = {tuple(r) for r in X}
    ok = np.mean([tuple(r) in valid for r in samples])
    print(f"  10,000 samples: {100 * ok:.2f}% valid, {len({tuple(r) for r in samples})} distinct patterns")
    observed = np.zeros(16, dtype=bool)
    observed[:8] = True
    inpainted = model.inpaint(X, observed)
    print(f"  inpainting the bottom half: {np.mean([tuple(r) in valid for r in inpainted]):.0%} valid patterns")
    return {"samples": samples[:10].reshape(-1, 4, 4), "masked": _masked(X[:10], observed).reshape(-1, 4, 4),
            "inpainted": inpainted[:10].reshape(-1, 4, 4)}


def _masked(X: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Images with the unobserved pixels shown at 0.5 (grey)."""
    out = X.astype(float)
    out[:, ~observed] = 0.5
    return out


def mnist_part(args: argparse.Namespace) -> dict[str, np.ndarray] | None:
    try:
        directory = mnist_dir(args.data)
        X = binarize(load_mnist(directory, split="train", n_samples=args.n_train).data)
        X_test = binarize(load_mnist(directory, split="test", n_samples=1000).data)
    except FileNotFoundError as exc:
        print(f"skipping MNIST: {exc}")
        return None
    # many small steps suit large data sets: one normalised gradient step per pair
    model = MPSBornMachine(max_bond=args.bond, n_sweeps=args.sweeps, learning_rate=0.005, n_descent_steps=1,
                           normalized_gradient=True, random_state=args.seed, verbose=True).fit(X)
    h = model.history_
    print(f"MNIST {len(X)} images, bond {model.mps_.max_bond_dim}: training NLL {h.nll[-1]:.2f} after "
          f"{len(h.nll)} sweeps ({np.median(h.seconds):.1f} s per sweep); held-out NLL {-model.score(X_test):.2f}")
    observed = np.zeros(784, dtype=bool)
    observed[:392] = True                           # the top 14 rows
    originals = X_test[:8]
    tree = tree_part(args, X, X_test, sum(t.size for t in model.mps_.tensors))
    return {
        **(tree or {}),
        "samples": model.sample(8, random_state=args.seed).reshape(-1, 28, 28),
        "masked": _masked(originals, observed).reshape(-1, 28, 28),
        "greedy": model.inpaint(originals, observed).reshape(-1, 28, 28),
        "sampled": model.inpaint(originals, observed, method="sample", random_state=args.seed).reshape(-1, 28, 28),
        "entropy": entanglement_entropies(model),
    }


def tree_part(
    args: argparse.Namespace, X: np.ndarray, X_test: np.ndarray, mps_params: int
) -> dict[str, np.ndarray] | None:
    """Train the TTN Born machine on the same images; return 8 samples and 8 greedy completions (or None)."""
    if args.ttn_sweeps <= 0:
        return None
    # the same rule as the MPS: one normalised gradient step at each node of the tour
    model = TTNBornMachine(max_bond=args.ttn_bond, n_sweeps=args.ttn_sweeps, learning_rate=0.005,
                           n_descent_steps=1, normalized_gradient=True, random_state=args.seed,
                           verbose=True).fit(X)
    h = model.history_
    print(f"MNIST tree (grid 28x28), bond {args.ttn_bond}: training NLL {h.nll[-1]:.2f} after {len(h.nll)} sweeps "
          f"({np.median(h.seconds):.1f} s per sweep); held-out NLL {-model.score(X_test):.2f}; "
          f"{model.num_params:,} parameters (the MPS: {mps_params:,})")
    observed = np.arange(784) < 392  # the top 14 rows
    return {"tree_samples": model.sample(8, random_state=args.seed).reshape(-1, 28, 28),
            "tree_greedy": model.inpaint(X_test[:8], observed).reshape(-1, 28, 28)}


def plot(bas: dict[str, np.ndarray], mnist: dict[str, np.ndarray] | None, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("BAS samples", bas["samples"]), ("BAS top half", bas["masked"]), ("BAS inpainted", bas["inpainted"])]
    if mnist is not None:
        rows += [("MNIST samples", mnist["samples"]), ("MNIST top half", mnist["masked"]),
                 ("greedy completion", mnist["greedy"]), ("sampled completion", mnist["sampled"])]
        if "tree_samples" in mnist:
            rows += [("TTN samples", mnist["tree_samples"]), ("TTN greedy completion", mnist["tree_greedy"])]
    n_cols = max(len(images) for _, images in rows)
    extra = 1 if mnist is not None else 0
    fig, axes = plt.subplots(len(rows) + extra, n_cols, figsize=(1.3 * n_cols, 1.4 * (len(rows) + extra)))
    from tnkit.ml.plots import draw_pattern

    for r, (title, images) in enumerate(rows):
        for c in range(n_cols):
            if c < len(images):
                draw_pattern(axes[r, c], images[c])
            else:
                axes[r, c].set_axis_off()
        axes[r, 0].set_title(title, fontsize=8, loc="left")
    if mnist is not None:
        for ax in axes[-1]:
            ax.remove()
        ax = fig.add_subplot(len(rows) + 1, 1, len(rows) + 1)
        ax.plot(mnist["entropy"], lw=0.8)
        ax.set_xlabel("bond (pixels in row-major order)", fontsize=8)
        ax.set_ylabel("S (nats)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "born_machine.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    bas = bars_and_stripes_part(args.seed)
    mnist = None if args.skip_mnist else mnist_part(args)
    print(f"wrote {plot(bas, mnist, args.out)}")


if __name__ == "__main__":
    main()
