"""``benchmarks/classifier.py --data`` takes the MNIST folder or the data root that holds ``mnist/``."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import load_script

CHECKOUT = Path(__file__).resolve().parents[1]
SCRIPT = CHECKOUT / "benchmarks" / "classifier.py"

pytestmark = pytest.mark.skipif(not SCRIPT.is_file(), reason="the benchmarks are not part of this copy")


@pytest.fixture
def bench(monkeypatch):
    """``benchmarks/classifier.py`` imported as a module."""
    return load_script(monkeypatch, SCRIPT, "_bench_classifier_under_test")


@pytest.mark.parametrize("name", ["train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"])
def test_data_root_and_mnist_folder_name_the_same_images(bench, tmp_path, name):
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    (mnist / name).write_bytes(b"")
    assert bench.mnist_folder(tmp_path) == mnist
    assert bench.mnist_folder(mnist) == mnist
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    assert bench.mnist_folder(empty) == empty  # named as missing in the skip message
