"""Dataset loaders: IDX parsing on files written here, MNIST from ../shared when present."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from tnkit.datasets import bars_and_stripes, binarize, load_digits, load_mnist, pool_images, read_idx
from tnkit.errors import SchemaError

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def _write_idx(path: Path, array: np.ndarray, code: int = 0x08, compress: bool = True) -> Path:
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if compress else open
    with opener(path, "wb") as fh:
        fh.write(raw)
    return path


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("code,dtype", [(0x08, np.uint8), (0x0C, np.int32), (0x0D, np.float32)])
def test_read_idx_round_trip(tmp_path, rng, compress, code, dtype):
    array = (rng.random((3, 4, 5)) * 100).astype(dtype)
    path = _write_idx(tmp_path / ("x.gz" if compress else "x"), array, code, compress)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.shape == array.shape
    np.testing.assert_array_equal(out, array)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(SchemaError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    path = _write_idx(tmp_path / "t", np.zeros((2, 3), np.uint8), compress=False)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(SchemaError, match="truncated"):
        read_idx(path)
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing")


def test_load_mnist_from_written_files(tmp_path, rng):
    images = rng.integers(0, 256, size=(6, 4, 4)).astype(np.uint8)
    labels = np.arange(6, dtype=np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    ds = load_mnist(tmp_path, "test", pool=2, n_samples=5)
    assert ds.data.shape == (5, 4) and ds.target.tolist() == [0, 1, 2, 3, 4]
    expected = images[:5].astype(float).reshape(5, 2, 2, 2, 2).mean(axis=(2, 4)).reshape(5, 4) / 255
    np.testing.assert_allclose(ds.data, expected)
    with pytest.raises(FileNotFoundError, match="train-images"):
        load_mnist(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        load_mnist(tmp_path, "validation")


def test_pool_images_checks_sizes():
    with pytest.raises(ValueError, match="multiple"):
        pool_images(np.zeros((1, 5, 4)), 2)


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"MNIST not found at {MNIST_DIR}")
def test_real_mnist_test_split():
    ds = load_mnist(MNIST_DIR, "test", pool=2)
    assert ds.data.shape == (10000, 196)
    assert 0.0 <= ds.data.min() and ds.data.max() <= 1.0
    counts = np.bincount(ds.target, minlength=10)
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_bars_and_stripes():
    patterns = bars_and_stripes(4)
    assert patterns.shape == (30, 16)
    grids = patterns.reshape(-1, 4, 4)
    rows_const = (grids == grids[:, :, :1]).all(axis=(1, 2))
    cols_const = (grids == grids[:, :1, :]).all(axis=(1, 2))
    assert (rows_const | cols_const).all()
    assert len({p.tobytes() for p in patterns}) == 30
    assert bars_and_stripes(2, 3).shape == (2**2 + 2**3 - 2, 6)


def test_load_digits_and_binarize():
    ds = load_digits()
    assert ds.data.shape == (1797, 64) and ds.data.max() == 1.0
    assert set(np.unique(binarize(ds.data))) <= {0, 1}


def test_default_mnist_dir_does_not_depend_on_the_working_directory(monkeypatch, tmp_path):
    from pathlib import Path

    import tnkit.datasets as datasets

    monkeypatch.setenv("TNKIT_MNIST_DIR", str(tmp_path))
    assert datasets.default_mnist_dir() == tmp_path
    monkeypatch.delenv("TNKIT_MNIST_DIR")
    beside = Path(datasets.__file__).resolve().parents[2] / "shared" / "data" / "mnist"
    monkeypatch.chdir(tmp_path)  # a script run from elsewhere
    expected = beside if beside.is_dir() else Path("..") / "shared" / "data" / "mnist"
    assert datasets.default_mnist_dir() == expected


def test_binarize_rejects_nan():
    with pytest.raises(ValueError, match="threshold"):
        binarize(np.zeros((2, 3)), float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        binarize(np.array([[0.2, np.nan]]))
    with pytest.raises(TypeError, match="threshold"):
        binarize(np.zeros(3), "0.5")
    np.testing.assert_array_equal(binarize(np.array([0.2, 0.7]), 0.5), [0, 1])


def test_mnist_directory_from_tnkit_data_and_a_helpful_error(monkeypatch, tmp_path):
    import tnkit.datasets as datasets

    monkeypatch.delenv("TNKIT_MNIST_DIR", raising=False)
    monkeypatch.setenv("TNKIT_DATA", str(tmp_path))
    assert datasets.default_mnist_dir() == tmp_path / "mnist"
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz.*TNKIT_DATA"):
        load_mnist(split="test")
    (tmp_path / "mnist").mkdir()
    with pytest.raises(FileNotFoundError, match=r"\['t10k-images-idx3-ubyte'\].*TNKIT_DATA"):
        load_mnist(split="test")
