"""quimb interop: a TTN and its quimb TensorNetwork contract to the same numbers."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close

from tnkit.ttn import TTN, Tree

qtn = pytest.importorskip("quimb.tensor")


@pytest.mark.parametrize("tree", [Tree.balanced(8), Tree.grid(2, 3), Tree.from_nested(((3, (0, 5)), 1, (4, 2)))])
@pytest.mark.parametrize("output_dim", [None, 3])
def test_round_trip_and_same_contractions(tree, output_dim):
    psi = TTN.random(tree, 2, 3, seed=0, dtype=np.complex128, output_dim=output_dim)
    tn = psi.to_quimb()
    assert isinstance(tn, qtn.TensorNetwork) and tn.num_tensors == len(tree.internal_nodes)
    outer = [f"k{i}" for i in range(tree.n_leaves)] + (["out"] if output_dim else [])
    assert_close(tn.contract(output_inds=outer).data, psi.to_dense(), np.complex128)
    assert np.isclose((tn.H @ tn) if output_dim is None else (tn.H @ tn), psi.norm() ** 2)
    back = TTN.from_quimb(tn)
    assert back.tree == tree and back.output_dim == output_dim
    for a, b in zip(back.tensors, psi.tensors):
        assert np.array_equal(a, b)


def test_from_a_network_built_in_quimb():
    rng = np.random.default_rng(0)
    # ((0, 1), 2) drawn by hand, bond names and index order of quimb's choosing
    a = qtn.Tensor(rng.standard_normal((4, 2, 2)), inds=("bond", "k1", "k0"))
    b = qtn.Tensor(rng.standard_normal((2, 4)), inds=("k2", "bond"), tags={"TTN_ROOT"})
    tn = a & b
    psi = TTN.from_quimb(tn)
    assert psi.tree.to_nested() == (2, (1, 0))  # children in the order of each tensor's indices
    ref = tn.contract(output_inds=["k0", "k1", "k2"]).data
    assert_close(psi.to_dense(), ref)
    feats = rng.standard_normal((5, 3, 2))
    assert_close(psi.contract_product_inputs(feats), np.einsum("abc,na,nb,nc->n", ref, *feats.transpose(1, 0, 2)))


def test_from_quimb_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match="TensorNetwork"):
        TTN.from_quimb(np.ones(3))
    loop = qtn.TensorNetwork([
        qtn.Tensor(rng.standard_normal((2, 2, 2)), inds=("k0", "x", "y")),
        qtn.Tensor(rng.standard_normal((2, 2, 2)), inds=("k1", "x", "y")),
    ])
    with pytest.raises(ValueError, match="cycle"):
        TTN.from_quimb(loop)
    odd = qtn.TensorNetwork([qtn.Tensor(rng.standard_normal((2, 2)), inds=("k0", "phys"))])
    with pytest.raises(ValueError, match="neither a physical index"):
        TTN.from_quimb(odd)
    gap = qtn.TensorNetwork([qtn.Tensor(rng.standard_normal((2, 2)), inds=("k0", "k2"))])
    with pytest.raises(ValueError, match="leaves 0..1"):
        TTN.from_quimb(gap)
