"""TreeTensorNetwork construction, dense/MPS conversion, product inputs, norms, files and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import DTYPES, all_configurations, assert_close, random_array, rel_err2

import tnkit
from tnkit.errors import SchemaError
from tnkit.ttn import TTN, Tree

from ._reference import TREES, dense_of, random_tensors


def _dims(tree, rng):
    return tuple(int(d) for d in rng.integers(2, 4, size=tree.n_leaves))


@pytest.mark.parametrize("name", sorted(TREES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output_dim", [None, 3])
def test_to_dense_matches_naive_reference(rng, name, dtype, output_dim):
    tree = TREES[name]()
    dims = _dims(tree, rng)
    tensors = random_tensors(rng, tree, dims, 3, dtype, output_dim)
    psi = TTN(tree, tensors[tree.n_leaves:])
    ref = dense_of(tree, tensors)
    assert psi.phys_dims == dims and psi.output_dim == output_dim and psi.dtype == dtype
    assert ref.shape == dims + ((output_dim,) if output_dim else ())
    assert_close(psi.to_dense(), ref, dtype)
    # the mapping form of the constructor gives the same network
    same = TTN(tree, {v: tensors[v] for v in tree.internal_nodes})
    assert_close(same.to_dense(), ref, dtype)


@pytest.mark.parametrize("name", sorted(TREES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_norm_inner_and_log_norm_against_dense(rng, name, dtype):
    tree = TREES[name]()
    dims = _dims(tree, rng)
    a = TTN(tree, random_tensors(rng, tree, dims, 3, dtype)[tree.n_leaves:])
    b = TTN(tree, random_tensors(rng, tree, dims, 2, dtype)[tree.n_leaves:])
    va, vb = a.to_dense().ravel(), b.to_dense().ravel()
    assert a.center is None
    assert math.isclose(a.norm(), np.linalg.norm(va), rel_tol=1e-10)
    assert_close(a.inner(b), np.vdot(va, vb), dtype, scale=np.linalg.norm(va) * np.linalg.norm(vb))
    assert math.isclose(a.fidelity(b), abs(np.vdot(va, vb)) ** 2 / (np.vdot(va, va) * np.vdot(vb, vb)).real,
                        rel_tol=1e-9)
    n = a.normalized()
    assert math.isclose(n.norm(), 1.0, rel_tol=1e-12)
    assert_close(n.to_dense().ravel(), va / np.linalg.norm(va), dtype)


def test_log_norm_is_safe_beyond_the_float_range():
    psi = TTN.random(Tree.balanced(64), 2, 8, seed=0)
    big = TTN(psi.tree, [t * 1e12 for t in psi.tensors])  # 63 tensors: norm 1e756
    assert big.center is None
    assert math.isclose(big.log_norm(), 63 * 12 * math.log(10), rel_tol=1e-10)
    assert big.norm() == math.inf
    phase, log_abs = big.log_inner(big)
    assert phase == pytest.approx(1.0) and math.isclose(log_abs, 2 * big.log_norm(), rel_tol=1e-12)
    small = big.normalized()
    assert math.isclose(small.norm(), 1.0, rel_tol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output_dim", [None, 4])
def test_random_is_seeded_normalised_canonical_and_capped(dtype, output_dim):
    tree = Tree.balanced(6)
    psi = TTN.random(tree, 2, 16, seed=3, dtype=dtype, output_dim=output_dim)
    again = TTN.random(tree, 2, 16, seed=3, dtype=dtype, output_dim=output_dim)
    assert np.array_equal(psi.to_dense(), again.to_dense())
    assert psi.center == tree.root and psi.is_canonical()
    assert math.isclose(psi.norm(), 1.0, rel_tol=1e-12)
    # bonds capped by what lies under them: nodes over 2 leaves have bond <= 4
    assert all(psi.bond_dim(v) <= 2 ** len(tree.leaves_under(v)) for v in tree.bonds)
    assert psi.dtype == dtype
    raw = TTN.random(tree, 2, 3, seed=1, normalize=False)
    assert raw.center is None


def test_product_state_is_a_kron_product(rng):
    tree = Tree.from_nested(((0, 2), (1, (3,))))
    vecs = [random_array(rng, (d,)) for d in (2, 3, 2, 4)]
    psi = TTN.product_state(tree, vecs)
    ref = np.einsum("a,b,c,d->abcd", *vecs)
    assert_close(psi.to_dense(), ref)
    assert psi.max_bond_dim == 1
    basis = TTN.product_state(Tree.balanced(3), "101")
    assert np.flatnonzero(basis.to_dense().ravel()).tolist() == [5]
    with pytest.raises(ValueError, match="basis state"):
        TTN.product_state(Tree.balanced(3), [0, 2, 0])
    with pytest.raises(ValueError, match="one state per leaf"):
        TTN.product_state(Tree.balanced(3), [0, 1])


@pytest.mark.parametrize("name", sorted(TREES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_from_dense_exact_then_truncated_reports_exact_error(rng, name, dtype):
    tree = TREES[name]()
    dims = _dims(tree, rng)
    v = random_array(rng, dims, dtype)
    psi, rep = TTN.from_dense(v, tree, return_report=True)
    assert_close(psi.to_dense(), v, dtype)
    assert rep.error < 1e-20 and psi.center == tree.root and psi.is_canonical(tree.root)
    small, rep = TTN.from_dense(v, tree, max_bond=2, return_report=True)
    assert max(small.bond_dims, default=1) <= 2
    assert math.isclose(rep.error, rel_err2(v.ravel(), small.to_dense().ravel()), rel_tol=1e-9, abs_tol=1e-14)
    assert math.isclose(sum(rep.discarded), rep.error, rel_tol=1e-12, abs_tol=1e-15)
    assert rep.bond_dims == small.bond_dims and small.is_canonical(tree.root)


def test_from_dense_flat_and_with_output(rng):
    tree = Tree.balanced(4)
    v = random_array(rng, (16 * 3,))
    psi = TTN.from_dense(v, tree, phys_dims=2, has_output=True)
    assert psi.output_dim == 3
    assert_close(psi.to_dense().ravel(), v)
    with pytest.raises(ValueError, match="one axis per leaf"):
        TTN.from_dense(v, tree)
    with pytest.raises(ValueError, match="multiple"):
        TTN.from_dense(v[:-1], tree, phys_dims=2, has_output=True)


@pytest.mark.parametrize("n", [1, 2, 3, 7])
@pytest.mark.parametrize("dtype", DTYPES)
def test_mps_round_trips_are_exact(n, dtype):
    mps = tnkit.MPS.random(n, 5, phys_dim=3, dtype=dtype, seed=n)
    psi = TTN.from_mps(mps)
    assert psi.tree == Tree.chain(n)
    assert_close(psi.to_dense().ravel(), mps.to_dense(), dtype)
    if n > 2:
        assert psi.center == psi.tree.root and psi.is_canonical()  # MPS centre 0 -> TTN root
    back = psi.to_mps()
    assert_close(back.to_dense(), mps.to_dense(), dtype)
    assert back.bond_dims == mps.bond_dims or n <= 2


def test_left_deep_chain_converts_to_mps_and_others_refuse(rng):
    tree = Tree.chain(5).mirrored()  # (((0, 1), 2), 3), 4)
    psi = TTN(tree, random_tensors(rng, tree, (2, 3, 2, 2, 3), 3)[tree.n_leaves:])
    assert_close(psi.to_mps().to_dense(), psi.to_dense().ravel())
    with pytest.raises(ValueError, match="chain tree"):
        TTN.random(Tree.balanced(4), 2, 2, seed=0).to_mps()
    with pytest.raises(ValueError, match="output axis"):
        TTN.random(Tree.chain(3), 2, 2, seed=0, output_dim=2).to_mps()
    with pytest.raises(TypeError, match="MatrixProductState"):
        TTN.from_mps(psi)


@pytest.mark.parametrize("name", sorted(TREES))
@pytest.mark.parametrize("output_dim", [None, 3])
def test_contract_product_inputs_against_einsum(rng, name, output_dim):
    tree = TREES[name]()
    dims = _dims(tree, rng)
    tensors = random_tensors(rng, tree, dims, 3, np.complex128, output_dim)
    psi = TTN(tree, tensors[tree.n_leaves:])
    feats = [random_array(rng, (7, d)) for d in dims]
    dense = dense_of(tree, tensors)
    ref = np.einsum(dense, list(range(1, tree.n_leaves + 1)) + ([tree.n_leaves + 1] if output_dim else []),
                    *[x for leaf, f in enumerate(feats) for x in (f, [0, leaf + 1])],
                    [0] + ([tree.n_leaves + 1] if output_dim else []))
    out = psi.contract_product_inputs(feats)
    assert out.shape == ((7, output_dim) if output_dim else (7,))
    assert_close(out, ref, np.complex128)
    if len(set(dims)) == 1:
        stacked = np.stack(feats, axis=1)  # (batch, n_leaves, d)
        assert_close(psi.contract_product_inputs(stacked), ref, np.complex128)


def test_contract_product_inputs_is_one_cached_plan(rng):
    psi = TTN.random(Tree.balanced(16), 2, 4, seed=0, output_dim=2)
    x = rng.standard_normal((5, 16, 2))
    psi.contract_product_inputs(x)
    before = tnkit.contract_cache_info()
    psi.contract_product_inputs(x + 1.0)
    after = tnkit.contract_cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses


def test_amplitudes_and_probabilities(rng):
    tree = Tree.balanced(5)
    psi = TTN.random(tree, (2, 3, 2, 2, 3), 4, seed=2, dtype=np.complex128, normalize=False)
    v = psi.to_dense().ravel()
    configs = all_configurations(psi.phys_dims)
    assert_close(psi.amplitudes(configs), v, np.complex128)
    p = psi.probabilities(configs)
    assert_close(p, np.abs(v) ** 2 / np.vdot(v, v).real)
    with pytest.raises(ValueError, match="basis state"):
        psi.amplitudes([[0, 3, 0, 0, 0]])
    with pytest.raises(TypeError, match="integers"):
        psi.amplitudes([[0.5, 0, 0, 0, 0]])


def test_scalar_algebra_and_conj(rng):
    psi = TTN.random(Tree.balanced(4), 2, 3, seed=0, dtype=np.complex128)
    v = psi.to_dense()
    assert_close((2.5j * psi).to_dense(), 2.5j * v, np.complex128)
    assert_close((psi / 2).to_dense(), v / 2, np.complex128)
    assert_close(psi.conj().to_dense(), v.conj(), np.complex128)
    assert (2 * psi).center == psi.center


def test_save_load_round_trip_and_verified_gauge(tmp_path):
    psi = TTN.random(Tree.grid(2, 3), 2, 4, seed=0, output_dim=2, dtype=np.complex128)
    path = psi.save(tmp_path / "psi")
    assert path.suffix == ".npz"
    back = TTN.load(path)
    assert back.tree == psi.tree and back.output_dim == 2
    assert np.array_equal(back.to_dense(), psi.to_dense())
    assert back.center == psi.center == psi.tree.root
    # a file whose gauge claims are false: the claims are dropped, not trusted
    raw = TTN(psi.tree, [t * 2 for t in psi.tensors])
    raw._iso = list(psi._iso)
    TTN.load(raw.save(tmp_path / "liar.npz"))
    liar = TTN.load(tmp_path / "liar.npz")
    assert liar.center is None
    tnkit.MPS.random(4, 2, seed=0).save(tmp_path / "mps.npz")
    with pytest.raises(SchemaError, match="MatrixProductState"):
        TTN.load(tmp_path / "mps.npz")
    with pytest.raises(FileNotFoundError):
        TTN.load(tmp_path / "missing.npz")


def test_constructor_errors(rng):
    tree = Tree.balanced(4)
    good = random_tensors(rng, tree, (2, 2, 2, 2), 3)[4:]
    with pytest.raises(TypeError, match="Tree"):
        TTN(((0, 1), (2, 3)), good)
    with pytest.raises(ValueError, match="3 tensors"):
        TTN(tree, good[:2])
    bad = list(good)
    bad[0] = bad[0][:, :, :2]
    with pytest.raises(ValueError, match="bond 4-6 has dimension 2 on node 4"):
        TTN(tree, bad)
    bad = list(good)
    bad[1] = bad[1][..., 0]
    with pytest.raises(ValueError, match=r"`tensors\[5\]` must have 3 axes"):
        TTN(tree, bad)
    bad = list(good)
    bad[2] = bad[2] * np.nan
    with pytest.raises(ValueError, match="finite"):
        TTN(tree, bad)
    with pytest.raises(ValueError, match="missing"):
        TTN(tree, {4: good[0], 5: good[1]})
    psi = TTN(tree, good)
    with pytest.raises(ValueError, match="same tree"):
        psi.inner(TTN.random(Tree.chain(4), 2, 2, seed=0))
    with pytest.raises(TypeError, match="TreeTensorNetwork"):
        psi.inner(tnkit.MPS.random(4, 2, seed=0))
    with pytest.raises(IndexError, match="internal node"):
        psi.canonicalize_(2)
    with pytest.raises(ValueError, match=r"\(batch, 4, 2\)"):
        psi.contract_product_inputs(np.ones((3, 5, 2)))
    with pytest.raises(TypeError, match="max_bond"):
        psi.compress(max_bond=2.5)
    with pytest.raises(ValueError, match="cutoff"):
        psi.compress(cutoff=1.5)
    with pytest.raises(TypeError, match="dtype"):
        TTN.random(tree, 2, 2, dtype=int)
    with pytest.raises(ValueError, match="max_size"):
        TTN.random(Tree.balanced(40), 2, 2, seed=0).to_dense()


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_log_norm_of_small_dense_subtrees_is_safe_from_overflow(scale):
    """Subtrees contracted at once (few entries) fall back to node-by-node rescaling at extreme scales."""
    from tnkit.ttn import network

    psi = TTN.random(Tree.balanced(32), 2, 4, seed=1)
    tensors = [None if t is None else t for t in psi._tensors]
    assert any(network._dense_subtrees(psi.tree, tuple(None if t is None else t.shape for t in tensors), network.DENSE_SUBTREE).values())
    scaled = TTN(psi.tree, [t * scale for t in psi.tensors])  # 31 tensors: norm scale**31
    assert scaled.center is None
    assert math.isclose(scaled.log_norm(), 31 * math.log(scale), rel_tol=1e-10)


@pytest.mark.parametrize("output_dim", [None, 3])
def test_product_inputs_in_chunks_of_rows_equal_one_contraction(rng, monkeypatch, output_dim):
    """A batch cut into chunks (to keep intermediates in cache) gives the same numbers, any chunk count."""
    from tnkit.ttn import network

    psi = TTN.random(Tree.grid(2, 3), 2, 4, output_dim=output_dim, seed=5)
    x = rng.standard_normal((37, 6, 2))
    whole = psi.contract_product_inputs(x)
    dense = psi.to_dense()
    expected = np.einsum("abcdef...,na,nb,nc,nd,ne,nf->n...", dense, *(x[:, leaf] for leaf in range(6)))
    assert_close(whole, expected)
    for entries in (1, 16, 200):  # 37 chunks of one row, then fewer
        monkeypatch.setattr(network, "CHUNK_ENTRIES", entries)
        np.testing.assert_allclose(psi.contract_product_inputs(x), whole, rtol=1e-13, atol=1e-15)


def test_norm_reuses_scratch_memory_for_its_node_products():
    """Repeated norms write the node products into scratch buffers: no node-sized array is allocated per call."""
    import tracemalloc

    psi = TTN.random(Tree.balanced(32), 2, 32, seed=3, normalize=False)  # two 32**3 nodes below the root
    raw = TTN(psi.tree, psi.tensors)  # no gauge: the full leaf-to-root sweep
    node_bytes = max(t.nbytes for t in raw.tensors)
    expected = raw.norm()
    tracemalloc.start()
    try:
        again = raw.norm()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert again == expected
    assert peak < node_bytes / 2, (peak, node_bytes)


def test_random_takes_the_mps_vocabulary_and_warns_on_the_former_keywords():
    """TTN.random(tree, phys_dim, max_bond) as MPS.random; phys_dims=/bond_dim= still work, with a FutureWarning."""
    tree = Tree.balanced(4)
    new = TTN.random(tree, phys_dim=3, max_bond=2, seed=7)
    with pytest.warns(FutureWarning, match="bond_dim"):
        with pytest.warns(FutureWarning, match="phys_dims"):
            old = TTN.random(tree, phys_dims=3, bond_dim=2, seed=7)
    assert old.bond_dims == new.bond_dims
    for a, b in zip(old.tensors, new.tensors):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="bond_dims"):
        TTN.random(tree, bond_dims=2)
    with pytest.raises(ValueError, match="max_bond"):
        TTN.random(tree, max_bond=0)
