"""Datasets for tnkit's learning products, read from disk or generated; nothing is downloaded.

- :func:`load_mnist` reads the four standard IDX files of MNIST or Fashion-MNIST
  (``train-images-idx3-ubyte[.gz]`` etc.) from a directory, with the
  preprocessing of Stoudenmire & Schwab (2016): 2x2 average pooling to 14x14 and
  scaling to ``[0, 1]``.
- :func:`read_idx` reads one IDX file (gzip or plain).
- :func:`load_digits` wraps scikit-learn's 8x8 digits with the same conventions.
- :func:`bars_and_stripes` generates the bars-and-stripes patterns used to test
  generative models (Han et al. 2018).
- :func:`binarize` thresholds images to ``{0, 1}`` integers.
- :func:`augment_images` adds randomly shifted, rotated and scaled copies of images
  (training-set augmentation; seeded, bilinear interpolation, zero outside the image).
- :func:`shifted_views` gives every whole-pixel shift of images up to a distance, pooled
  (test-time augmentation: average a classifier's ``predict_proba`` over the views).

Images come back as ``float64`` arrays of shape ``(n_samples, height * width)``
(row-major pixels), or ``(n_samples, height, width)`` with ``flatten=False``;
labels as ``int64`` arrays of shape ``(n_samples,)``.
"""

from __future__ import annotations

import gzip
import itertools
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .core.validate import check_int, check_number, check_option
from .errors import SchemaError

__all__ = [
    "Dataset",
    "read_idx",
    "load_mnist",
    "pool_images",
    "load_digits",
    "bars_and_stripes",
    "binarize",
    "augment_images",
    "shifted_views",
    "MNIST_FILES",
    "default_mnist_dir",
]

#: File stems of the standard IDX files, per split: (images, labels).
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

#: IDX element type codes (third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class Dataset(NamedTuple):
    """Features and labels of one split."""

    data: np.ndarray
    target: np.ndarray


def default_mnist_dir() -> Path:
    """Where tnkit looks for MNIST when no directory is given.

    In this order: ``$TNKIT_MNIST_DIR`` (the directory holding the four IDX files);
    ``$TNKIT_DATA/mnist`` (``$TNKIT_DATA`` being a data directory with one
    sub-directory per data set); ``shared/data/mnist`` beside the tnkit checkout
    (``<repo>/../shared``) if it exists, so scripts work from any directory; else
    ``../shared/data/mnist`` relative to the current working directory (named in the
    error when it is missing too).
    """
    env = os.environ.get("TNKIT_MNIST_DIR")
    if env:
        return Path(env)
    data = os.environ.get("TNKIT_DATA")
    if data:
        return Path(data) / "mnist"
    beside_checkout = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
    return beside_checkout if beside_checkout.is_dir() else Path("..") / "shared" / "data" / "mnist"


def _missing_files_message(directory: Path, missing: list[str]) -> str:
    wanted = ", ".join(f"{stem}.gz" for stems in MNIST_FILES.values() for stem in stems)
    return (
        f"MNIST files {missing} not found in {str(directory)!r}. Put the four standard IDX files "
        f"({wanted}; gzip-compressed or not) of MNIST or Fashion-MNIST in one directory and pass it "
        f"as `directory`, or set TNKIT_DATA to a directory that holds them in a sub-directory `mnist` "
        f"(or TNKIT_MNIST_DIR to the directory itself). Nothing is downloaded."
    )


def _find_idx_file(directory: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem, stem.replace("-idx", ".idx")):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(_missing_files_message(directory, [stem]))


def read_idx(path: Any) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a numpy array.

    Parameters
    ----------
    path : str or path-like
        The file; a ``.gz`` suffix or the gzip magic bytes mark compression.

    Returns
    -------
    numpy.ndarray
        The array with the file's shape and element type (native byte order).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    SchemaError
        If the file is not a well-formed IDX file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    with open(path, "rb") as fh:
        head = fh.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise SchemaError(f"{str(path)!r} is a corrupt gzip file: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise SchemaError(f"{str(path)!r} is not an IDX file (bad magic number {raw[:4].hex()}).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise SchemaError(
            f"{str(path)!r} is truncated or padded: header says shape {shape} ({expected} bytes), "
            f"file has {len(raw)} bytes."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def pool_images(images: np.ndarray, factor: int = 2) -> np.ndarray:
    """Average-pool images of shape ``(n, h, w)`` over ``factor x factor`` blocks.

    ``h`` and ``w`` must be multiples of ``factor``; returns ``(n, h // factor, w // factor)``.
    """
    factor = check_int("factor", factor, minimum=1)
    images = np.asarray(images, dtype=float)
    if images.ndim != 3:
        raise ValueError(f"`images` must have shape (n, height, width), got shape {images.shape}.")
    n, h, w = images.shape
    if h % factor or w % factor:
        raise ValueError(f"image size {h}x{w} is not a multiple of the pooling `factor` {factor}.")
    return images.reshape(n, h // factor, factor, w // factor, factor).mean(axis=(2, 4))


def load_mnist(
    directory: Any = None,
    split: str = "train",
    *,
    pool: int = 1,
    n_samples: int | None = None,
    flatten: bool = True,
) -> Dataset:
    """Load MNIST or Fashion-MNIST from the four standard IDX files in ``directory``.

    Parameters
    ----------
    directory : str or path-like, optional
        Directory holding ``train-images-idx3-ubyte.gz`` etc. Default: :func:`default_mnist_dir`
        (``$TNKIT_MNIST_DIR``, or ``$TNKIT_DATA/mnist``).
    split : {"train", "test"}
        Which files to read.
    pool : int
        Average-pooling factor: 1 keeps 28x28, 2 gives the 14x14 images of
        Stoudenmire & Schwab (2016).
    n_samples : int, optional
        Keep only the first ``n_samples`` images (in file order).
    flatten : bool
        Return images as ``(n, h * w)`` (row-major) rather than ``(n, h, w)``.

    Returns
    -------
    Dataset
        ``data``: float64 pixels divided by 255, so in ``[0, 1]`` (one global scale, the
        range the classifiers' feature maps expect); ``target``: int64 labels.

    Raises
    ------
    FileNotFoundError
        If the directory or one of the files is missing; the message lists the four
        files and where to put them.
    """
    check_option("split", split, MNIST_FILES)
    directory = default_mnist_dir() if directory is None else Path(directory)
    if not directory.is_dir():
        every = [stem for stems in MNIST_FILES.values() for stem in stems]
        raise FileNotFoundError(_missing_files_message(directory, every))
    image_stem, label_stem = MNIST_FILES[split]
    images = read_idx(_find_idx_file(directory, image_stem))
    labels = read_idx(_find_idx_file(directory, label_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise SchemaError(
            f"MNIST {split} files disagree: images of shape {images.shape}, labels of shape {labels.shape}."
        )
    if n_samples is not None:
        n_samples = check_int("n_samples", n_samples, minimum=1)
        images, labels = images[:n_samples], labels[:n_samples]
    data = images.astype(float) / 255.0
    if pool != 1:
        data = pool_images(data, pool)
    if flatten:
        data = data.reshape(len(data), -1)
    return Dataset(data, labels.astype(np.int64))


def load_digits(*, flatten: bool = True) -> Dataset:
    """scikit-learn's 8x8 handwritten digits, pixels scaled from ``0..16`` to ``[0, 1]``."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    data = bunch.images / 16.0
    if flatten:
        data = data.reshape(len(data), -1)
    return Dataset(data, bunch.target.astype(np.int64))


def bars_and_stripes(rows: int = 4, cols: int | None = None, *, flatten: bool = True) -> np.ndarray:
    """Every bars-and-stripes pattern on a ``rows x cols`` grid, without repeats.

    A pattern has every row constant (stripes) or every column constant (bars);
    the all-0 and all-1 images are both, so there are ``2**rows + 2**cols - 2``
    distinct patterns (30 on 4x4).

    Returns
    -------
    numpy.ndarray
        ``int64`` array of shape ``(n_patterns, rows * cols)`` (or
        ``(n_patterns, rows, cols)`` with ``flatten=False``), values in ``{0, 1}``.
    """
    rows = check_int("rows", rows, minimum=1)
    cols = rows if cols is None else check_int("cols", cols, minimum=1)
    patterns = {}
    for bits in itertools.product((0, 1), repeat=rows):
        image = np.repeat(np.array(bits)[:, None], cols, axis=1)
        patterns[image.tobytes()] = image
    for bits in itertools.product((0, 1), repeat=cols):
        image = np.repeat(np.array(bits)[None, :], rows, axis=0)
        patterns[image.tobytes()] = image
    out = np.stack(list(patterns.values())).astype(np.int64)
    return out.reshape(len(out), -1) if flatten else out


def binarize(images: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``1`` where a pixel is above ``threshold``, else ``0`` (``int64``, same shape).

    Raises
    ------
    ValueError
        If ``threshold`` is not a finite number or ``images`` holds NaN (which no
        threshold can place on either side).
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise TypeError(f"`threshold` must be a real number, got {threshold!r} of type {type(threshold).__name__}.")
    if not np.isfinite(threshold):
        raise ValueError(f"`threshold` must be a finite number, got {threshold!r}.")
    images = np.asarray(images)
    if images.dtype.kind not in "biuf":
        raise TypeError(f"`images` must hold real numbers, got dtype {images.dtype}.")
    if images.dtype.kind == "f" and np.isnan(images).any():
        raise ValueError(f"`images` holds {int(np.isnan(images).sum())} NaN values; binarize needs real pixel values.")
    return (images > threshold).astype(np.int64)


def _affine_warp(images: np.ndarray, angles: np.ndarray, scales: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Bilinear resampling of each image under a rotation and scaling about its centre plus a shift.

    ``images`` (n, h, w); ``angles`` (n,) in radians; ``scales`` (n,); ``shifts`` (n, 2) in
    pixels (rows, columns). Output pixel ``p`` takes the input at ``A^-1 (p - c - t) + c``;
    pixels that fall outside the input read 0.
    """
    n, h, w = images.shape
    rows, cols = np.meshgrid(np.arange(h, dtype=float), np.arange(w, dtype=float), indexing="ij")
    cy, cx = (h - 1) / 2, (w - 1) / 2
    cos, sin = np.cos(angles)[:, None, None] / scales[:, None, None], np.sin(angles)[:, None, None] / scales[:, None, None]
    dy = rows[None] - cy - shifts[:, 0, None, None]
    dx = cols[None] - cx - shifts[:, 1, None, None]
    src_y = cos * dy - sin * dx + cy
    src_x = sin * dy + cos * dx + cx
    y0, x0 = np.floor(src_y).astype(np.int64), np.floor(src_x).astype(np.int64)
    fy, fx = src_y - y0, src_x - x0
    padded = np.zeros((n, h + 2, w + 2))
    padded[:, 1:-1, 1:-1] = images
    # indices into the padded image; anything beyond one pixel outside reads the zero border
    y0p, x0p = np.clip(y0 + 1, 0, h + 1), np.clip(x0 + 1, 0, w + 1)
    y1p, x1p = np.clip(y0 + 2, 0, h + 1), np.clip(x0 + 2, 0, w + 1)
    idx = np.arange(n)[:, None, None]
    return ((1 - fy) * (1 - fx) * padded[idx, y0p, x0p] + (1 - fy) * fx * padded[idx, y0p, x1p]
            + fy * (1 - fx) * padded[idx, y1p, x0p] + fy * fx * padded[idx, y1p, x1p])


def _checked_images(images: Any) -> np.ndarray:
    """``images`` as a float64 array of shape ``(n, height, width)``, or a clear error.

    Raises ``ValueError`` for another number of dimensions or non-finite values and
    ``TypeError`` for values that are not real numbers.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"`images` must have shape (n, height, width), got shape {images.shape}.")
    if images.dtype.kind not in "biuf":
        raise TypeError(f"`images` must hold real numbers, got dtype {images.dtype}.")
    images = images.astype(float)
    if not np.all(np.isfinite(images)):
        raise ValueError("`images` holds NaN or infinite values.")
    return images


def augment_images(
    images: Any,
    labels: Any,
    *,
    n_copies: int = 5,
    max_shift: float = 2.0,
    max_rotation: float = 10.0,
    max_scale: float = 0.1,
    include_original: bool = True,
    seed: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Training-set augmentation: random small shifts, rotations and scalings of each image.

    Each copy of an image is resampled (bilinear interpolation, zero outside the image)
    under a rotation by an angle drawn uniformly from ``[-max_rotation, max_rotation]``
    degrees and a scaling by a factor from ``[1 - max_scale, 1 + max_scale]``, both about
    the image centre, followed by a shift drawn uniformly from ``[-max_shift, max_shift]``
    pixels along each axis. Augment at full resolution and pool afterwards
    (:func:`pool_images`): a 2-pixel shift at 28x28 is a 1-pixel shift at 14x14, and
    smaller ones are sub-pixel shifts there.

    Parameters
    ----------
    images : array_like, shape (n, height, width)
        Images with values in any range (the output stays inside the input's range:
        bilinear weights are convex and the outside reads 0).
    labels : array_like, shape (n,)
        Labels, repeated for the copies.
    n_copies : int
        Transformed copies per image (>= 1).
    max_shift : float
        Largest shift along each axis, in pixels (>= 0).
    max_rotation : float
        Largest rotation angle, in degrees (0 to 180).
    max_scale : float
        Largest relative change of size (``0 <= max_scale < 1``).
    include_original : bool
        Put the images themselves first in the output.
    seed : None, int or numpy.random.Generator
        Seed of the random transformations.

    Returns
    -------
    images : numpy.ndarray, shape (n * (n_copies + include_original), height, width)
        float64; the originals first (if included), then copy 1 of every image, copy 2, ...
    labels : numpy.ndarray, shape (n * (n_copies + include_original),)

    Raises
    ------
    ValueError
        If ``images`` is not 3-dimensional, holds non-finite values, or ``labels`` does
        not have one entry per image; if an option is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> X, y = augment_images(np.ones((3, 8, 8)), np.arange(3), n_copies=2, seed=0)
    >>> X.shape, y.tolist()
    ((9, 8, 8), [0, 1, 2, 0, 1, 2, 0, 1, 2])
    """
    n_copies = check_int("n_copies", n_copies, minimum=1)
    max_shift = check_number("max_shift", max_shift, positive=False)
    max_rotation = check_number("max_rotation", max_rotation, positive=False)
    max_scale = check_number("max_scale", max_scale, positive=False)
    if max_rotation > 180:
        raise ValueError(f"`max_rotation` must be in [0, 180] degrees, got {max_rotation!r}.")
    if max_scale >= 1:
        raise ValueError(f"`max_scale` must be in [0, 1), got {max_scale!r}.")
    if not isinstance(include_original, (bool, np.bool_)):
        raise TypeError(f"`include_original` must be a bool, got {include_original!r}.")
    images = _checked_images(images)
    labels = np.asarray(labels)
    if labels.shape != (len(images),):
        raise ValueError(f"`labels` must have shape ({len(images)},) (one per image), got shape {labels.shape}.")
    rng = np.random.default_rng(seed)
    n, first = len(images), int(include_original)
    out = np.empty((n * (n_copies + first),) + images.shape[1:])   # filled in place: peak memory ~ the output
    if first:
        out[:n] = images
    chunk = max(1, 2_000_000 // max(1, images[0].size))
    for copy in range(first, n_copies + first):
        angles = np.deg2rad(rng.uniform(-max_rotation, max_rotation, n))
        scales = 1 + rng.uniform(-max_scale, max_scale, n)
        shifts = rng.uniform(-max_shift, max_shift, (n, 2))
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            out[copy * n + s : copy * n + e] = _affine_warp(images[s:e], angles[s:e], scales[s:e], shifts[s:e])
    return out, np.tile(labels, n_copies + first)


def shifted_views(images: Any, *, max_shift: int = 1, pool: int = 1, flatten: bool = True) -> np.ndarray:
    """Every whole-pixel shift of each image by at most ``max_shift`` along each axis, then pooled.

    Test-time augmentation: a classifier trained on shifted copies
    (:func:`augment_images`) predicts the mean of its ``predict_proba`` over the views,
    ``np.mean([clf.predict_proba(v) for v in views], axis=0)``. Shifts are exact (no
    interpolation); pixels shifted in from outside the image are 0. Shift at full
    resolution and pool afterwards (as for :func:`augment_images`): a 1-pixel shift at
    28x28 is a half-pixel shift of the 14x14 image.

    Parameters
    ----------
    images : array_like, shape (n, height, width)
        Images (real, finite; any range).
    max_shift : int
        Largest shift along each axis, in pixels (``0 <= max_shift < min(height, width)``);
        ``(2 * max_shift + 1) ** 2`` views.
    pool : int
        Average-pooling factor applied to every view (:func:`pool_images`; 1 = none).
    flatten : bool
        Return each pooled view as rows of ``h * w`` pixels (row-major), the layout of
        :func:`load_mnist` and of tnkit's classifiers.

    Returns
    -------
    numpy.ndarray, float64, shape (n_views, n, h * w) or (n_views, n, h, w)
        ``h, w = height // pool, width // pool``. View 0 is the unshifted image; the others
        follow in row-major order of the shift ``(rows, columns)`` in
        ``[-max_shift, max_shift]**2``. Memory: ``n_views * n * h * w * 8`` bytes (MNIST
        test set, ``max_shift=1``, ``pool=2``: 141 MB).

    Raises
    ------
    ValueError
        If ``images`` is not 3-dimensional or holds non-finite values, if ``max_shift`` is
        out of range, or if ``pool`` does not divide the image size.

    Examples
    --------
    >>> import numpy as np
    >>> views = shifted_views(np.arange(16.0).reshape(1, 4, 4), max_shift=1, pool=2)
    >>> views.shape
    (9, 1, 4)
    >>> views[0].tolist()
    [[2.5, 4.5, 10.5, 12.5]]
    """
    max_shift = check_int("max_shift", max_shift, minimum=0)
    pool = check_int("pool", pool, minimum=1)
    if not isinstance(flatten, (bool, np.bool_)):
        raise TypeError(f"`flatten` must be a bool, got {flatten!r}.")
    images = _checked_images(images)
    n, h, w = images.shape
    if max_shift >= min(h, w):
        raise ValueError(f"`max_shift` must be smaller than the image size {h}x{w}, got {max_shift}.")
    if h % pool or w % pool:
        raise ValueError(f"image size {h}x{w} is not a multiple of the pooling `pool` {pool}.")
    steps = range(-max_shift, max_shift + 1)
    shifts = [(0, 0)] + [s for s in itertools.product(steps, steps) if s != (0, 0)]
    out = np.empty((len(shifts), n, h // pool, w // pool))
    m = max_shift
    padded = np.pad(images, ((0, 0), (m, m), (m, m)))   # view (dy, dx) at pixel p reads p - (dy, dx)
    for k, (dy, dx) in enumerate(shifts):
        out[k] = pool_images(padded[:, m - dy : m - dy + h, m - dx : m - dx + w], pool)
    return out.reshape(len(shifts), n, -1) if flatten else out
