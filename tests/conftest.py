"""Shared fixtures and dense reference implementations for the tnkit test suite.

Every numerical routine is checked against the plain dense state vector on small
systems. The helpers here are deliberately naive (``np.einsum`` on the full
vector, partial traces by reshaping) so that they are obviously correct.

Dense vectors use tnkit's default order: site 0 is the slowest index.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

#: Relative tolerances by dtype: the one table every numerical test reads.
TOL = {
    np.dtype(np.float64): 1e-10,
    np.dtype(np.complex128): 1e-10,
    np.dtype(np.float32): 1e-4,
    np.dtype(np.complex64): 1e-4,
}

#: The double-precision dtypes every numerical test runs over.
DTYPES = [np.float64, np.complex128]

#: Pauli matrices and friends for readable tests.
X = np.array([[0.0, 1.0], [1.0, 0.0]])
Y = np.array([[0.0, -1j], [1j, 0.0]])
Z = np.diag([1.0, -1.0])
H = np.array([[1.0, 1.0], [1.0, -1.0]]) / np.sqrt(2)
CNOT = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=float)


def blas_thread_counts() -> set[int]:
    """Thread counts of the BLAS libraries threadpoolctl sees (empty without threadpoolctl)."""
    try:
        import threadpoolctl
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return set()
    return {info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"}


@pytest.fixture
def two_caller_threads():
    """The caller allows 2 BLAS threads; tnkit's thread setting is reset afterwards."""
    from tnkit.core.threads import set_num_threads

    if not blas_thread_counts():
        pytest.skip("no BLAS library visible to threadpoolctl")
    import threadpoolctl

    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        yield
    set_num_threads(None)


@pytest.fixture
def rng() -> np.random.Generator:
    """The one seeded generator every test draws from."""
    return np.random.default_rng(1234)


# --------------------------------------------------------------------------- random data


def random_array(rng: np.random.Generator, shape, dtype=np.float64) -> np.ndarray:
    """Gaussian array of ``shape``; complex dtypes get independent real and imaginary parts."""
    dtype = np.dtype(dtype)
    a = rng.standard_normal(shape)
    if dtype.kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def random_mpo(rng: np.random.Generator, out_dims, in_dims, bond: int, dtype=np.float64):
    """Random MPO with Gaussian site tensors ``(w, d_out, d_in, w)`` and bulk bond ``bond``."""
    from tnkit import MPO

    n = len(out_dims)
    bonds = [1] + [bond] * (n - 1) + [1]
    return MPO([random_array(rng, (bonds[i], out_dims[i], in_dims[i], bonds[i + 1]), dtype) for i in range(n)])


def assert_close_rtol(actual, desired, rtol: float = 1e-10) -> None:
    """``assert_allclose`` with ``atol = rtol * max(|desired|, 1)``: relative at the scale of ``desired``."""
    desired = np.asarray(desired)
    scale = max(float(np.abs(desired).max(initial=0.0)), 1.0)
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * scale)


def random_unitary(rng: np.random.Generator, d: int, dtype=np.float64) -> np.ndarray:
    """Haar-ish random orthogonal/unitary ``(d, d)`` matrix (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(random_array(rng, (d, d), dtype))
    return q * (np.diag(r) / np.abs(np.diag(r)))


def random_hermitian(rng: np.random.Generator, d: int, dtype=np.float64) -> np.ndarray:
    a = random_array(rng, (d, d), dtype)
    return a + a.conj().T


# --------------------------------------------------------------------------- dense references


def dense_apply(vector: np.ndarray, dims, gate: np.ndarray, sites) -> np.ndarray:
    """Apply ``gate`` on ``sites`` of the dense ``vector`` with ``np.einsum``.

    ``gate`` follows tnkit's convention: a ``(d_out, d_in)`` matrix for one site, or a
    ``(d_i d_j, d_i d_j)`` matrix / ``(out_i, out_j, d_i, d_j)`` tensor for the sites
    in the order listed (the first listed site is the slower index of the gate).
    Returns the new dense vector (site 0 slowest).
    """
    dims = tuple(dims)
    n = len(dims)
    sites = (sites,) if np.ndim(sites) == 0 else tuple(sites)
    sites = tuple(s % n for s in sites)
    in_dims = tuple(dims[s] for s in sites)
    gate = np.asarray(gate)
    if len(sites) == 1:
        g = gate.reshape(gate.shape[0], in_dims[0])
    elif gate.ndim == 2:
        g = gate.reshape(in_dims + in_dims)
    else:
        g = gate
    psi = np.asarray(vector).reshape(dims)
    psi_idx = list(range(n))
    out_idx = [n + k for k in range(len(sites))]
    g_idx = out_idx + [sites[k] for k in range(len(sites))]
    res_idx = list(psi_idx)
    for k, s in enumerate(sites):
        res_idx[s] = out_idx[k]
    return np.einsum(g, g_idx, psi, psi_idx, res_idx).reshape(-1)


def dense_expectation(vector: np.ndarray, dims, op: np.ndarray, sites) -> complex:
    """``<v|O_sites|v> / <v|v>``."""
    return np.vdot(vector, dense_apply(vector, dims, op, sites)) / np.vdot(vector, vector)


def dense_rdm(vector: np.ndarray, dims, sites) -> np.ndarray:
    """Reduced density matrix of ``sites`` (in the order listed, first slowest), trace one."""
    dims = tuple(dims)
    n = len(dims)
    sites = (sites,) if np.ndim(sites) == 0 else tuple(sites)
    rest = [k for k in range(n) if k not in sites]
    psi = np.asarray(vector).reshape(dims).transpose(list(sites) + rest)
    m = psi.reshape(int(np.prod([dims[s] for s in sites])), -1)
    rho = m @ m.conj().T
    return rho / np.trace(rho).real


def dense_schmidt_values(vector: np.ndarray, dims, bond: int) -> np.ndarray:
    """Normalised Schmidt values across ``bond`` (between sites ``bond`` and ``bond + 1``)."""
    dims = tuple(dims)
    left = int(np.prod(dims[: bond + 1]))
    s = np.linalg.svd(np.asarray(vector).reshape(left, -1), compute_uv=False)
    return s / np.linalg.norm(s)


def entropy(p: np.ndarray, alpha: float = 1.0) -> float:
    """Von Neumann / Rényi entropy (nats) of a probability vector."""
    p = np.asarray(p, dtype=float)
    p = p[p > 1e-300]
    if alpha == 1:
        return float(-np.sum(p * np.log(p)))
    return float(np.log(np.sum(p**alpha)) / (1 - alpha))


def rdm_entropy(rho: np.ndarray) -> float:
    return entropy(np.clip(np.linalg.eigvalsh(rho), 0, None))


def all_configurations(dims) -> np.ndarray:
    """Every basis configuration, in the order of the dense vector (site 0 slowest)."""
    return np.array(list(itertools.product(*(range(d) for d in dims))), dtype=np.intp)


def rel_err2(v: np.ndarray, w: np.ndarray) -> float:
    """``||v - w||**2 / ||v||**2``."""
    return float(np.linalg.norm(v - w) ** 2 / np.linalg.norm(v) ** 2)


def dense_fidelity(v: np.ndarray, w: np.ndarray) -> float:
    return float(abs(np.vdot(v, w)) ** 2 / (np.vdot(v, v).real * np.vdot(w, w).real))


def assert_close(actual, desired, dtype=np.float64, *, scale: float | None = None) -> None:
    """``assert_allclose`` with the dtype's tolerance, relative to the size of ``desired``."""
    rtol = TOL[np.dtype(dtype)]
    desired = np.asarray(desired)
    if scale is None:
        scale = max(float(np.abs(desired).max(initial=0.0)), 1.0)
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * scale)


def assert_gradients_match_finite_differences(
    loss_of, tensors, grads, *, checks_per_tensor: int, eps: float = 1e-6, rtol: float = 1e-6
) -> None:
    """Central differences of ``loss_of(tensors)`` against ``grads`` at a spread of entries.

    About ``checks_per_tensor`` entries of every tensor are perturbed by ``+-eps``; each
    difference quotient must match the analytic gradient to ``rtol * max(1, |fd|)``.
    """
    for i, t in enumerate(tensors):
        for idx in list(np.ndindex(t.shape))[:: max(1, t.size // checks_per_tensor)]:
            plus = [x.copy() for x in tensors]
            minus = [x.copy() for x in tensors]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            fd = (loss_of(plus) - loss_of(minus)) / (2 * eps)
            assert abs(grads[i][idx] - fd) <= rtol * max(1.0, abs(fd)), (i, idx)


def dense_feature_outputs(weights: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """``f[b, ...] = sum_s W[s_0, ..., s_{L-1}, ...] prod_i phi[b, i, s_i]``, one sample at a time.

    ``weights`` has one leading axis per site (any trailing axes, e.g. classes, are
    kept); ``phi`` holds the feature vectors, shape ``(batch, L, d)``.
    """
    out = []
    for b in range(len(phi)):
        v = weights
        for i in range(phi.shape[1]):
            v = np.tensordot(phi[b, i], v, axes=(0, 0))
        out.append(v)
    return np.array(out)


def classifier_loss(outputs: np.ndarray, targets: np.ndarray, loss: str) -> float:
    """Mean squared loss ``0.5 |f - y|^2`` or softmax cross-entropy of ``outputs`` ``(n, K)``."""
    if loss == "squared":
        return float(0.5 * np.mean(np.sum((outputs - targets) ** 2, axis=1)))
    log_softmax = outputs - np.log(np.exp(outputs).sum(axis=1, keepdims=True))
    return float(np.mean(-np.sum(targets * log_softmax, axis=1)))


@pytest.fixture
def no_silent_numpy(monkeypatch):
    """``torch.Tensor.__array__`` refused: a silent conversion of a tensor to numpy fails the test."""
    import torch

    def refuse(self, *args, **kwargs):
        raise AssertionError("a torch tensor was silently converted to numpy")

    monkeypatch.setattr(torch.Tensor, "__array__", refuse)



def fit_recording_starts(model, X) -> list[list[float]]:
    """Fit the Born machine ``model`` to ``X``; return the training NLL history of each complete start.

    Wraps the shared ``_sweep_fit`` of the model's class for the duration of the fit.
    """
    runs: list[list[float]] = []
    cls = type(model)
    original = cls._sweep_fit

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        runs.append(list(out[1].nll))
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cls, "_sweep_fit", spy)
        model.fit(X)
    return runs


def load_script(monkeypatch, path, name: str):
    """The script at ``path`` imported as module ``name`` (``sys.path``, ``sys.modules`` restored after)."""
    import importlib.util
    import sys

    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
