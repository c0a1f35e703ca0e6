"""Dataset loaders: IDX parsing on files written here, MNIST from ../shared when present."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from tnkit.datasets import (
    augment_images,
    bars_and_stripes,
    binarize,
    load_digits,
    load_mnist,
    pool_images,
    read_idx,
    shifted_views,
)
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


def _reference_augment(images, seed, n_copies, max_shift, max_rotation, max_scale):
    """scipy.ndimage's bilinear affine_transform (zero padding) with the same random draws."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    h, w = images.shape[1:]
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    out = []
    for _ in range(n_copies):
        angles = np.deg2rad(rng.uniform(-max_rotation, max_rotation, len(images)))
        scales = 1 + rng.uniform(-max_scale, max_scale, len(images))
        shifts = rng.uniform(-max_shift, max_shift, (len(images), 2))
        for image, a, s, t in zip(images, angles, scales, shifts):
            m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) / s
            out.append(ndimage.affine_transform(image, m, offset=centre - m @ (centre + t), order=1,
                                                mode="grid-constant", cval=0.0))
    return np.stack(out)


def test_augment_images_matches_scipy_affine_transform(rng):
    images = rng.random((5, 9, 7))
    X, y = augment_images(images, np.arange(5), n_copies=3, max_shift=2.5, max_rotation=30, max_scale=0.2, seed=4)
    assert X.shape == (20, 9, 7) and y.tolist() == list(range(5)) * 4
    np.testing.assert_array_equal(X[:5], images)
    np.testing.assert_allclose(X[5:], _reference_augment(images, 4, 3, 2.5, 30, 0.2), atol=1e-12)
    assert X.min() >= 0 and X.max() <= images.max()


def test_augment_images_identity_shift_and_seed(rng):
    images = rng.random((4, 6, 6))
    X, _ = augment_images(images, np.zeros(4), n_copies=2, max_shift=0, max_rotation=0, max_scale=0,
                          include_original=False)
    np.testing.assert_allclose(X, np.concatenate([images, images]), atol=1e-14)
    point = np.zeros((1, 5, 5))
    point[0, 2, 2] = 1.0
    moved, _ = augment_images(point, [7], n_copies=50, max_shift=1, max_rotation=0, max_scale=0, seed=0,
                              include_original=False)
    np.testing.assert_allclose(moved.sum(axis=(1, 2)), 1.0)   # sub-pixel shifts keep the mass inside the image
    rows = (moved.sum(axis=2) * np.arange(5)).sum(axis=1)
    assert np.all(np.abs(rows - 2) <= 1) and np.std(rows) > 0.3
    a, _ = augment_images(images, np.zeros(4), seed=3)
    b, _ = augment_images(images, np.zeros(4), seed=3)
    c, _ = augment_images(images, np.zeros(4), seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"n_copies": 0}, ValueError, "n_copies"),
    ({"max_shift": -1}, ValueError, "max_shift"),
    ({"max_rotation": 200}, ValueError, "max_rotation"),
    ({"max_scale": 1.0}, ValueError, "max_scale"),
    ({"max_scale": "big"}, TypeError, "max_scale"),
    ({"include_original": 1}, TypeError, "include_original"),
])
def test_augment_images_rejects_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        augment_images(np.zeros((2, 4, 4)), [0, 1], **kwargs)


def test_augment_images_rejects_bad_input():
    with pytest.raises(ValueError, match="images"):
        augment_images(np.zeros((2, 16)), [0, 1])
    with pytest.raises(ValueError, match="labels"):
        augment_images(np.zeros((2, 4, 4)), [0, 1, 2])
    with pytest.raises(ValueError, match="NaN"):
        augment_images(np.full((1, 4, 4), np.nan), [0])
    with pytest.raises(TypeError, match="images"):
        augment_images(np.array([[["a"]]]), [0])


def test_shifted_views_are_the_exact_shifts_then_pooled(rng):
    """Each view against np.roll with the wrapped-in rows and columns zeroed, then pool_images."""
    images = rng.random((3, 8, 6))
    views = shifted_views(images, max_shift=2, pool=2)
    assert views.shape == (25, 3, 12)
    np.testing.assert_array_equal(views[0], pool_images(images, 2).reshape(3, -1))
    steps = range(-2, 3)
    shifts = [(0, 0)] + [(a, b) for a in steps for b in steps if (a, b) != (0, 0)]
    for view, (dy, dx) in zip(views, shifts, strict=True):
        ref = np.roll(images, (dy, dx), axis=(1, 2))
        if dy > 0:
            ref[:, :dy] = 0
        elif dy < 0:
            ref[:, dy:] = 0
        if dx > 0:
            ref[:, :, :dx] = 0
        elif dx < 0:
            ref[:, :, dx:] = 0
        np.testing.assert_allclose(view, pool_images(ref, 2).reshape(3, -1), atol=1e-15)
    unflat = shifted_views(images, max_shift=1, flatten=False)
    assert unflat.shape == (9, 3, 8, 6)
    np.testing.assert_array_equal(unflat[0], images)
    assert np.all(unflat.sum(axis=(2, 3)) <= images.sum(axis=(1, 2)) + 1e-12)   # mass only leaves the image


def test_shifted_views_average_a_classifier():
    """The documented test-time average: the mean of predict_proba over the views is a distribution."""
    from tnkit.ml import TTNClassifier

    data, target = load_digits(flatten=False)
    clf = TTNClassifier(max_bond=4, n_epochs=2, random_state=0).fit(data[:300].reshape(300, -1), target[:300])
    views = shifted_views(data[300:400], max_shift=1)
    proba = np.mean([clf.predict_proba(v) for v in views], axis=0)
    assert proba.shape == (100, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(clf.predict_proba(views[0]), clf.predict_proba(data[300:400].reshape(100, -1)))


@pytest.mark.parametrize("kwargs,error,match", [
    ({"max_shift": -1}, ValueError, "max_shift"),
    ({"max_shift": 4}, ValueError, "max_shift"),
    ({"max_shift": 1.5}, TypeError, "max_shift"),
    ({"pool": 3}, ValueError, "pool"),
    ({"pool": 0}, ValueError, "pool"),
    ({"flatten": 1}, TypeError, "flatten"),
])
def test_shifted_views_rejects_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        shifted_views(np.zeros((2, 4, 4)), **kwargs)


def test_shifted_views_rejects_bad_input():
    with pytest.raises(ValueError, match="images"):
        shifted_views(np.zeros((2, 16)))
    with pytest.raises(ValueError, match="NaN"):
        shifted_views(np.full((1, 4, 4), np.nan))
    with pytest.raises(TypeError, match="images"):
        shifted_views(np.array([[["a"]]]))
