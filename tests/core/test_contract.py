"""tnkit.core.contract: planned and compiled einsum against ``np.einsum``."""

from __future__ import annotations

import threading

import numpy as np
import opt_einsum as oe
import pytest
from conftest import DTYPES, assert_close, random_array
from opt_einsum.testing import rand_equation

from tnkit.core.contract import (
    ContractionInfo,
    clear_contract_cache,
    contract,
    contract_cache_info,
    contract_strategy,
    contraction_info,
)
from tnkit.core.paths import available_optimizers, get_optimizer, register_optimizer
from tnkit.errors import OptionError

OPTIMIZERS = [o for o in available_optimizers() if o != "cotengra"]

# (n_terms, regularity, n_out, global_dim, seed): seeded random equations of varied shape.
_EQ_PARAMS = [
    (2, 2, 0, False, 0),
    (2, 2, 2, True, 1),
    (3, 2, 0, False, 2),
    (3, 3, 1, False, 3),
    (4, 2, 2, False, 4),
    (4, 3, 0, True, 5),
    (5, 2, 1, False, 6),
    (5, 3, 3, False, 7),
    (6, 2, 2, False, 8),
    (6, 3, 0, True, 9),
    (7, 3, 2, False, 10),
]
EQUATIONS = [
    rand_equation(n, reg, n_out=n_out, d_min=2, d_max=4, seed=seed, global_dim=glob)
    for n, reg, n_out, glob, seed in _EQ_PARAMS
]


def _operands(rng, shapes, dtype=np.float64):
    return [random_array(rng, s, dtype) for s in shapes]


# --------------------------------------------------------------------------- correctness


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimize", OPTIMIZERS)
@pytest.mark.parametrize("eq_shapes", EQUATIONS, ids=[e for e, _ in EQUATIONS])
def test_contract_matches_einsum(rng, eq_shapes, optimize, dtype):
    eq, shapes = eq_shapes
    arrays = _operands(rng, shapes, dtype)
    expected = np.einsum(eq, *arrays)
    result = contract(eq, *arrays, optimize=optimize)
    assert result.shape == expected.shape
    assert result.dtype == expected.dtype
    assert_close(result, expected, dtype)


# Every permutation of operand axes for a pairwise contraction with free, summed and
# batch indices: all layouts (natural, transposed view, swapped operands, copy) must agree.
_PAIR_LAYOUTS = [
    ("ka,kb->ab", "ak,kb->ab", "ka,bk->ab", "ak,bk->ba"),
    ("ijk,jkl->il", "ikj,ljk->il", "jki,klj->li", "kji,jlk->il"),
    ("bik,bkj->bij", "ibk,jkb->bij", "kbi,bjk->ijb", "bki,bjk->bij"),
    ("abc,d->abcd", "a,bc->cab"),
]


@pytest.mark.parametrize("eq", [e for group in _PAIR_LAYOUTS for e in group])
@pytest.mark.parametrize("dtype", DTYPES)
def test_pairwise_layouts_match_einsum(rng, eq, dtype):
    sizes = dict(zip("abcdijklm", (2, 3, 4, 5, 3, 4, 5, 2, 3)))
    terms = eq.split("->")[0].split(",")
    arrays = [random_array(rng, tuple(sizes[c] for c in t), dtype) for t in terms]
    assert_close(contract(eq, *arrays), np.einsum(eq, *arrays), dtype)


def test_pairwise_step_uses_transposed_views_instead_of_copies():
    from tnkit.core.contract import _compiled_plan

    # A left environment against a site tensor stored (k, a): no operand needs a copy.
    plan = _compiled_plan("ka,kb->ab", ((7, 3), (7, 5)), ("float64",) * 2, "auto")
    ((_, step),) = plan.steps
    assert step.perm_l is None and step.perm_r is None
    assert step.trans_l and not step.trans_r


@pytest.mark.filterwarnings("ignore:Couldn't import `kahypar`:UserWarning")
def test_contract_cotengra(rng):
    pytest.importorskip("cotengra")
    eq, shapes = EQUATIONS[7]
    arrays = _operands(rng, shapes)
    assert_close(contract(eq, *arrays, optimize="cotengra"), np.einsum(eq, *arrays))
    assert contraction_info(eq, *arrays, optimize="cotengra").optimize == "cotengra"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "eq",
    [
        "nab,nbc->nac",  # batch index
        "nab,nbc->anc",  # batch index, permuted output
        "ii->i",  # diagonal
        "ii->",  # trace
        "aa",  # implicit trace
        "ab,bc",  # implicit output
        "ba",  # implicit transpose
        "aB,Bc",  # implicit output with upper case (ASCII order, as numpy)
        "Ab,bc",
        "ab,ab->",  # scalar output
        "abc,abc->",
        "ab->ba",
        "ab->",
        "ab,cd->abcd",  # outer product
        "ab,cd->dbca",
        "aab,bc->ac",  # repeated index inside one term
        "ab,bc->b",  # index summed in one operand only
        "ab,ab,ab->ab",  # index shared by three operands
        "ijk,jkl,klm->im",
        "abc,cd,de->aeb",
        ",ab->ab",  # scalar operand
        "a,a->a",
    ],
)
def test_contract_special_equations(rng, eq, dtype):
    lhs = eq.split("->")[0]
    letters = sorted(set(lhs) - {","})
    size = {c: 2 + k % 3 for k, c in enumerate(letters)}
    arrays = [random_array(rng, tuple(size[c] for c in term), dtype) for term in lhs.split(",")]
    expected = np.einsum(eq, *arrays)
    result = contract(eq, *arrays)
    assert result.shape == expected.shape
    assert_close(result, expected, dtype)


def test_contract_ignores_spaces(rng):
    a, b = random_array(rng, (2, 3)), random_array(rng, (3, 4))
    assert_close(contract(" ab , bc -> ac ", a, b), a @ b)


def test_contract_mixed_dtypes_promote(rng):
    a = random_array(rng, (3, 4), np.float64)
    b = random_array(rng, (4, 5), np.complex128)
    out = contract("ab,bc->ac", a, b)
    assert out.dtype == np.complex128
    assert_close(out, a @ b, np.complex128)


def test_contract_float32_keeps_dtype(rng):
    a = random_array(rng, (3, 4), np.float32)
    b = random_array(rng, (4, 5), np.float32)
    out = contract("ab,bc->ac", a, b)
    assert out.dtype == np.float32
    assert_close(out, a.astype(np.float64) @ b.astype(np.float64), np.float32)


def test_contract_identity_equation(rng):
    a = random_array(rng, (3, 3))
    out = contract("ab->ab", a)
    assert_close(out, a)


# --------------------------------------------------------------------------- optimize forms


def test_explicit_path(rng):
    eq = "ab,bc,cd->ad"
    arrays = _operands(rng, [(2, 3), (3, 4), (4, 5)])
    for path in ([(1, 2), (0, 1)], [(0, 1), (0, 1)], ((0, 2), (0, 1))):
        out = contract(eq, *arrays, optimize=path)
        assert_close(out, np.einsum(eq, *arrays))
        info = contraction_info(eq, *arrays, optimize=path)
        assert info.path == tuple(tuple(step) for step in path)
        assert info.optimize == "tuple"


def test_explicit_path_from_opt_einsum(rng):
    eq, shapes = EQUATIONS[8]
    arrays = _operands(rng, shapes)
    path, _ = oe.contract_path(eq, *arrays, optimize="greedy")
    assert_close(contract(eq, *arrays, optimize=path), np.einsum(eq, *arrays))


def test_path_optimizer_instance(rng):
    eq, shapes = EQUATIONS[6]
    arrays = _operands(rng, shapes)
    opt = oe.DynamicProgramming()
    assert_close(contract(eq, *arrays, optimize=opt), np.einsum(eq, *arrays))
    assert contraction_info(eq, *arrays, optimize=opt).optimize == "DynamicProgramming"


@pytest.mark.parametrize("optimize", OPTIMIZERS)
def test_contraction_info_matches_opt_einsum(optimize):
    eq, shapes = EQUATIONS[5]
    info = contraction_info(eq, *shapes, optimize=optimize)
    _, ref = oe.contract_path(eq, *shapes, shapes=True, optimize=get_optimizer(optimize))
    assert isinstance(info, ContractionInfo)
    assert info.optimize == optimize
    assert info.flops > 0
    assert info.naive_flops > 0
    assert info.speedup == info.naive_flops / info.flops
    assert len(info.path) == len(shapes) - 1
    assert info.largest_intermediate == int(ref.largest_intermediate)
    out_size = int(np.prod([ref.size_dict[c] for c in eq.split("->")[1]]))
    assert info.largest_intermediate >= out_size
    if optimize != "random-greedy":  # random-greedy may find another path of equal quality
        assert info.flops == int(ref.opt_cost)
    assert eq in str(info) and optimize in str(info)


def test_contraction_info_fields_simple():
    info = contraction_info("ab,bc", (2, 3), (3, 4))
    assert info.equation == "ab,bc->ac"  # the implicit output made explicit
    assert info.path == ((0, 1),)
    assert info.largest_intermediate == 8
    assert info.flops > 0


def test_contraction_info_single_operand():
    info = contraction_info("ii->i", (3, 3))
    assert info.path == ((0,),)
    assert info.flops > 0
    assert info.largest_intermediate == 9


def test_contraction_info_arrays_and_shapes_agree(rng):
    eq, shapes = EQUATIONS[4]
    arrays = _operands(rng, shapes)
    assert contraction_info(eq, *arrays).path == contraction_info(eq, *shapes).path


# --------------------------------------------------------------------------- defaults


def test_contract_strategy_sets_and_restores_default():
    shapes = [(2, 3), (3, 4), (4, 2)]
    assert contraction_info("ab,bc,cd->ad", *shapes).optimize == "auto"
    with contract_strategy("greedy"):
        assert contraction_info("ab,bc,cd->ad", *shapes).optimize == "greedy"
        with contract_strategy("optimal"):
            assert contraction_info("ab,bc,cd->ad", *shapes).optimize == "optimal"
        assert contraction_info("ab,bc,cd->ad", *shapes).optimize == "greedy"
        # an explicit argument still wins over the context default
        assert contraction_info("ab,bc,cd->ad", *shapes, optimize="dp").optimize == "dp"
    assert contraction_info("ab,bc,cd->ad", *shapes).optimize == "auto"


def test_contract_strategy_restores_after_exception():
    with pytest.raises(RuntimeError, match="boom"):
        with contract_strategy("greedy"):
            raise RuntimeError("boom")
    assert contraction_info("ab,bc->ac", (2, 2), (2, 2)).optimize == "auto"


def test_contract_strategy_accepts_path_and_is_used(rng):
    a, b, c = _operands(rng, [(2, 3), (3, 4), (4, 2)])
    with contract_strategy([(1, 2), (0, 1)]):
        info = contraction_info("ab,bc,cd->ad", a, b, c)
        assert info.path == ((1, 2), (0, 1))
        assert_close(contract("ab,bc,cd->ad", a, b, c), a @ b @ c)


def test_contract_strategy_validates_before_entering():
    with pytest.raises(OptionError, match="must be one of"):
        with contract_strategy("no-such-strategy"):
            pytest.fail("entered the block")  # pragma: no cover
    with pytest.raises(TypeError, match="`optimize` must be"):
        with contract_strategy(3.5):
            pytest.fail("entered the block")  # pragma: no cover
    assert contraction_info("ab,bc->ac", (2, 2), (2, 2)).optimize == "auto"


def test_contract_strategy_is_per_thread():
    seen = {}

    def worker():
        seen["thread"] = contraction_info("ab,bc,cd->ad", (2, 3), (3, 4), (4, 2)).optimize

    with contract_strategy("greedy"):
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        seen["main"] = contraction_info("ab,bc,cd->ad", (2, 3), (3, 4), (4, 2)).optimize
    assert seen == {"thread": "auto", "main": "greedy"}


# --------------------------------------------------------------------------- cache


def test_plan_cache_hits_grow_on_repeats(rng):
    a, b, c = _operands(rng, [(3, 5), (5, 7), (7, 2)])
    clear_contract_cache()
    assert contract_cache_info().currsize == 0
    first = contract("ab,bc,cd->ad", a, b, c)
    after_first = contract_cache_info()
    assert after_first.misses == 1 and after_first.hits == 0
    for k in range(1, 4):
        again = contract("ab,bc,cd->ad", a, b, c)
        assert contract_cache_info().hits == k
        np.testing.assert_array_equal(again, first)
    assert contract_cache_info().misses == 1
    # inspecting the same plan is another hit; a new shape a new miss
    contraction_info("ab,bc,cd->ad", a, b, c)
    assert contract_cache_info().hits == 4
    contract("ab,bc,cd->ad", a[:2], b, c)
    assert contract_cache_info().misses == 2
    # dtype is part of the key
    contract("ab,bc,cd->ad", a.astype(complex), b, c)
    assert contract_cache_info().misses == 3
    clear_contract_cache()
    assert contract_cache_info().currsize == 0


# --------------------------------------------------------------------------- errors


def test_error_wrong_number_of_arrays(rng):
    a = random_array(rng, (2, 2))
    with pytest.raises(ValueError, match="2 input terms but 3 arrays"):
        contract("ab,bc->ac", a, a, a)
    with pytest.raises(ValueError, match="2 input terms but 1 arrays"):
        contract("ab,bc->ac", a)


def test_error_mismatched_index_sizes(rng):
    with pytest.raises(ValueError, match="index 'b' .* has size 3 in one operand and 4"):
        contract("ab,bc->ac", random_array(rng, (2, 3)), random_array(rng, (4, 5)))


def test_error_term_rank(rng):
    with pytest.raises(ValueError, match=r"term 1 \('bc'\) .* has 2 indices but array 1"):
        contract("ab,bc->ac", random_array(rng, (2, 3)), random_array(rng, (3,)))


def test_error_ellipsis(rng):
    a = random_array(rng, (2, 3))
    with pytest.raises(ValueError, match="ellipsis"):
        contract("...a,ab->...b", a, a.T)


def test_error_output_index_not_in_input(rng):
    with pytest.raises(ValueError, match="output index 'z'"):
        contract("ab,bc->az", random_array(rng, (2, 3)), random_array(rng, (3, 2)))


def test_error_equation_type(rng):
    with pytest.raises(TypeError, match="`equation` must be a str"):
        contract(b"ab->ab", random_array(rng, (2, 2)))


def test_error_unknown_optimizer(rng):
    a = random_array(rng, (2, 2))
    with pytest.raises(OptionError, match=r"must be one of \['auto', .*'greedy'.*got 'nope'") as exc:
        contract("ab,bc->ac", a, a, optimize="nope")
    assert isinstance(exc.value, KeyError)
    assert isinstance(exc.value, ValueError)
    for name in available_optimizers():
        assert repr(name) in str(exc.value)
    with pytest.raises(KeyError):
        contraction_info("ab,bc->ac", (2, 2), (2, 2), optimize="nope")
    with pytest.raises(ValueError):
        get_optimizer("nope")


def test_error_unknown_optimizer_single_operand(rng):
    with pytest.raises(OptionError):
        contract("ii->i", random_array(rng, (3, 3)), optimize="nope")


def test_error_bad_optimize_values(rng):
    a = random_array(rng, (2, 2))
    with pytest.raises(TypeError, match="`optimize` must be a strategy name"):
        contract("ab,bc->ac", a, a, optimize=1.5)
    with pytest.raises(TypeError, match="sequence of index tuples"):
        contract("ab,bc->ac", a, a, optimize=[1, 2])
    with pytest.raises(ValueError, match="must not be empty"):
        contract("ab,bc->ac", a, a, optimize=[])


def test_register_optimizer_rejects_duplicates():
    with pytest.raises(OptionError, match="'greedy' is already registered"):
        register_optimizer("greedy", lambda: "greedy")
    assert "greedy" in available_optimizers()


def test_contract_torch_tensors_keep_autograd(rng):
    torch = pytest.importorskip("torch")
    eqs = ["ab,bc->ac", "ka,kb->ab", "bik,bkj->bij", "abc,cd,db->a", "aab->b", "ijk,jkl->li"]
    for eq in eqs:
        terms = eq.split("->")[0].split(",")
        sizes = dict(zip("abcdijkl", (2, 3, 4, 5, 3, 4, 5, 2)))
        arrays = [random_array(rng, tuple(sizes[c] for c in t), np.float64) for t in terms]
        tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
        out = contract(eq, *tensors)
        assert isinstance(out, torch.Tensor)
        np.testing.assert_allclose(out.detach().numpy(), np.einsum(eq, *arrays), rtol=1e-12, atol=1e-12)
        out.sum().backward()
        reference = [torch.tensor(a, requires_grad=True) for a in arrays]
        torch.einsum(eq, *reference).sum().backward()
        for mine, ref in zip(tensors, reference):
            np.testing.assert_allclose(mine.grad.numpy(), ref.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_matrix_on_a_middle_axis_broadcasts_without_copying_the_tensor(rng):
    from tnkit.core.contract import _BroadcastMatmulStep, _compiled_plan

    for eq in ("Zb,abc->aZc", "abc,Zb->aZc", "bZ,abc->aZc", "Zbd,abdc->aZc", "abdc,dbZ->aZc"):
        terms = eq.split("->")[0].split(",")
        sizes = dict(zip("abcdZ", (5, 16, 20, 3, 7)))
        arrays = [random_array(rng, tuple(sizes[c] for c in t), np.float64) for t in terms]
        assert_close(contract(eq, *arrays), np.einsum(eq, *arrays), np.float64)
        plan = _compiled_plan(eq, tuple(a.shape for a in arrays), ("d", "d"), "auto")
        assert isinstance(plan.steps[0][1], _BroadcastMatmulStep), eq


def test_intermediates_are_freed_as_soon_as_they_are_consumed():
    """A long chain keeps only a few arrays alive at once, not every intermediate until the end."""
    import tracemalloc

    n, size = 12, 300
    mats = [np.full((size, size), 1.0 / size) for _ in range(n)]
    letters = "abcdefghijklmnopqrstuvwxyz"
    eq = ",".join(letters[k : k + 2] for k in range(n)) + "->a" + letters[n]
    path = [(0, 1)] + [(0, n - 2 - k) for k in range(n - 2)]  # left to right: (next matrix, result at the end)
    expected = contract(eq, *mats, optimize=path)
    tracemalloc.start()
    try:
        contract(eq, *mats, optimize=path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    one = size * size * 8
    assert peak < 4 * one, f"peak {peak / one:.1f} matrices"
    np.testing.assert_allclose(expected, np.full((size, size), 1.0 / size))
