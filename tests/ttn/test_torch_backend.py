"""Tree tensor networks on torch tensors (CPU), compared with the same operations on numpy.

``torch.Tensor.__array__`` is disabled in every test: a silent conversion of a tensor
to numpy inside the engine fails instead of passing unnoticed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tnkit.core.backend import to_numpy
from tnkit.mps import spin_operators
from tnkit.ttn import Tree, TreeTensorNetwork

torch = pytest.importorskip("torch")


pytestmark = pytest.mark.usefixtures("no_silent_numpy")


@pytest.fixture(params=[np.float64, np.complex128], ids=["float64", "complex128"])
def pair(request):
    psi = TreeTensorNetwork.random(Tree.balanced(8), 2, 6, seed=3, dtype=request.param, normalize=False)
    return psi, psi.to("torch")


def test_to_and_back(pair):
    psi, t = pair
    assert t.backend == "torch" and t.device == "cpu" and t.num_params == psi.num_params
    assert all(isinstance(a, torch.Tensor) for a in t.tensors if a is not None)
    back = t.to("numpy")
    for a, b in zip(back.tensors, psi.tensors, strict=True):
        assert (a is None and b is None) or np.array_equal(a, b)


def test_canonical_norm_inner(pair):
    psi, t = pair
    assert math.isclose(t.log_norm(), psi.log_norm(), rel_tol=1e-12)  # no centre: environment factors
    node = t.tree.root - 1
    t.canonicalize_(node)
    psi.canonicalize_(node)
    assert t.center == node and t.is_canonical(node)
    assert math.isclose(t.log_norm(), psi.log_norm(), rel_tol=1e-12)
    other = TreeTensorNetwork.random(Tree.balanced(8), 2, 6, seed=4, dtype=psi.dtype)
    assert t.inner(other.to("torch")) == pytest.approx(psi.inner(other), rel=1e-10)
    t.normalize_()
    assert t.norm() == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(to_numpy(t.to_dense()), psi.normalized().to_dense(), atol=1e-12)


def test_compress_and_measure(pair):
    psi, t = pair
    small, report = psi.compress(max_bond=3)
    tsmall, treport = t.compress(max_bond=3)
    assert tsmall.backend == "torch" and tsmall.bond_dims == small.bond_dims
    assert treport.error == pytest.approx(report.error, rel=1e-8)
    np.testing.assert_allclose(treport.discarded, report.discarded, rtol=1e-8, atol=1e-15)
    sz = spin_operators()["Sz"]
    assert t.expectation(sz, 2) == pytest.approx(psi.expectation(sz, 2), abs=1e-12)
    np.testing.assert_allclose(t.entropies(), psi.entropies(), atol=1e-10)


def test_amplitudes_sampling_and_chain(pair):
    psi, t = pair
    configs = np.random.default_rng(0).integers(0, 2, (6, 8))
    np.testing.assert_allclose(t.amplitudes(configs), psi.amplitudes(configs), atol=1e-12)
    np.testing.assert_allclose(t.probabilities(configs), psi.probabilities(configs), rtol=1e-10)
    np.testing.assert_array_equal(t.sample(40, seed=2), psi.sample(40, seed=2))
    chain = TreeTensorNetwork.random(Tree.chain(6), 2, 4, seed=1, dtype=psi.dtype)
    mps = chain.to("torch").to_mps()
    assert mps.backend == "torch"
    assert mps.to("numpy").fidelity(chain.to_mps()) == pytest.approx(1.0, abs=1e-12)
