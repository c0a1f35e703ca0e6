"""TTNBornMachine against dense references: normalisation by enumeration, log-scaled
likelihoods, gradients against finite differences, sampled frequencies, NLL decrease,
bars-and-stripes, save/load and argument checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import all_configurations, assert_gradients_match_finite_differences, fit_recording_starts
from hypothesis import given, settings
from hypothesis import strategies as st

from tnkit.datasets import bars_and_stripes
from tnkit.errors import OptionError, SchemaError
from tnkit.ml.ttn_born_machine import (
    TTNBornMachine,
    _TreeData,
    sweep_tour,
    tree_log_amplitudes,
    tree_nll_and_gradient,
)
from tnkit.ttn import TTN, Tree

DIMS = (2, 3, 2, 2, 2, 3)  # a 2x3 image with mixed numbers of values per feature


def node_tensors(psi: TTN, scale: float = 1.0) -> list:
    """Writable tensors indexed by node (``None`` for leaves)."""
    return [None] * psi.n_leaves + [np.array(psi.tensor(v)) * scale for v in psi.tree.internal_nodes]


def dense_nll(tree: Tree, tensors: list, X: np.ndarray) -> float:
    v = np.abs(TTN(tree, [tensors[u] for u in tree.internal_nodes]).to_dense()) ** 2
    p = v / np.sum(v)
    return float(-np.mean(np.log(p[tuple(X.T)])))


def random_data(rng, n, dims):
    return np.stack([rng.integers(0, d, size=n) for d in dims], axis=1)


def fitted_random(rng, tree, dims, bond=3) -> TTNBornMachine:
    model = TTNBornMachine()
    model.tree_ = tree
    model.ttn_ = TTN.random(tree, list(dims), bond, seed=rng)
    model.n_categories_ = np.asarray(dims)
    model.n_features_in_ = len(dims)
    return model


@pytest.fixture(scope="module")
def bas():
    X = bars_and_stripes(4)
    return TTNBornMachine(max_bond=24, n_sweeps=2, random_state=0).fit(X), X


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("tree", [Tree.grid(2, 3), Tree.balanced(6, arity=3), Tree.from_nested((0, ((1, 2), 3), (4, 5)))])
def test_probabilities_sum_to_one_and_match_dense(rng, tree):
    model = fitted_random(rng, tree, DIMS)
    configs = all_configurations(DIMS)
    log_p = model.log_prob(configs)
    assert np.exp(log_p).sum() == pytest.approx(1.0, abs=1e-12)
    v = model.ttn_.to_dense()
    np.testing.assert_allclose(np.exp(log_p), (v**2 / np.sum(v**2))[tuple(configs.T)], rtol=1e-10, atol=1e-15)


def test_fitted_model_is_normalised(rng):
    X = random_data(rng, 40, DIMS)
    model = TTNBornMachine(max_bond=4, n_sweeps=2, image_shape=(2, 3), random_state=1).fit(X)
    assert np.exp(model.log_prob(all_configurations(DIMS))).sum() == pytest.approx(1.0, abs=1e-12)
    assert model.ttn_.is_canonical(model.tree_.root)


def test_log_prob_is_log_scaled_for_a_thousand_features():
    """p(x) = 2**-1024 underflows in float64; its log does not."""
    tree = Tree.balanced(1024)
    model = TTNBornMachine()
    model.tree_, model.n_categories_, model.n_features_in_ = tree, np.full(1024, 2), 1024
    model.ttn_ = TTN.product_state(tree, [np.ones(2) / math.sqrt(2)] * 1024)
    X = np.random.default_rng(0).integers(0, 2, (5, 1024))
    np.testing.assert_allclose(model.log_prob(X), -1024 * math.log(2), rtol=1e-12)


def test_log_amplitudes_of_zero_amplitude_are_minus_inf():
    tree = Tree.grid(2, 2)
    psi = TTN.product_state(tree, [0, 1, 1, 0])
    X = np.array([[0, 1, 1, 0], [1, 1, 1, 0]])
    out = tree_log_amplitudes(tree, node_tensors(psi), X, np.full(4, 2))
    assert out[0] == pytest.approx(0.0) and out[1] == -math.inf


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("tree", [Tree.grid(2, 3), Tree.balanced(6, arity=3)])
def test_gradient_matches_finite_differences_in_any_gauge(rng, tree, dtype):
    """Complex tensors: the gradient is dNLL/dRe + 1j dNLL/dIm (checked as pairs of reals)."""
    psi = TTN.random(tree, list(DIMS), 3, seed=rng, normalize=False, dtype=dtype)
    tensors = node_tensors(psi, 1.3)
    X = random_data(rng, 25, DIMS)
    nll, grads = tree_nll_and_gradient(tree, tensors, X, np.asarray(DIMS))
    assert nll == pytest.approx(dense_nll(tree, tensors, X), rel=1e-11)
    nodes = list(tree.internal_nodes)

    def as_real(a):
        return np.stack([a.real, a.imag], axis=-1) if dtype == np.complex128 else a

    def loss_of(ts):
        if dtype == np.complex128:
            ts = [t[..., 0] + 1j * t[..., 1] for t in ts]
        return dense_nll(tree, [None] * tree.n_leaves + ts, X)

    assert_gradients_match_finite_differences(
        loss_of, [as_real(tensors[v]) for v in nodes], [as_real(grads[v]) for v in nodes], checks_per_tensor=6,
        rtol=1e-5,
    )


def test_node_update_direction_is_the_gradient_at_the_centre(rng):
    """Canonical about v with Z = 1: dNLL/dT_v = 2 T_v - 2 data_gradient (Han et al.'s update)."""
    tree = Tree.grid(2, 3)
    X = random_data(rng, 30, DIMS)
    for v in tree.internal_nodes:
        psi = TTN.random(tree, list(DIMS), 3, seed=rng).canonicalize_(v).normalize_()
        tensors = node_tensors(psi)
        _, grads = tree_nll_and_gradient(tree, tensors, X, np.asarray(DIMS))
        data = _TreeData(tree, np.asarray(DIMS), X)
        data.build_inside(tensors)
        for u in tree.preorder():
            if u >= tree.n_leaves:
                for c in data.internal_kids[u]:
                    data.set_outside(c, tensors[u])
        np.testing.assert_allclose(grads[v], 2 * tensors[v] - 2 * data.data_gradient(v, tensors[v]), atol=1e-10)


def test_distinct_rows_with_frequencies_give_the_node_nll_and_gradient_of_all_rows(rng):
    """Repeated samples: the distinct rows weighted by their frequencies give the same NLL and data term."""
    from tnkit.ml.ttn_born_machine import _NodeProblem

    tree = Tree.grid(2, 3)
    X = random_data(rng, 12, DIMS)[rng.integers(0, 12, size=100)]   # 100 rows, at most 12 distinct
    psi = TTN.random(tree, list(DIMS), 3, seed=rng, dtype=np.complex128)
    v = tree.root
    tensors = node_tensors(psi.canonicalize_(v).normalize_())
    problems = []
    for data in (_TreeData(tree, np.asarray(DIMS), X), _TreeData.distinct(tree, np.asarray(DIMS), X)):
        data.build_inside(tensors)
        problems.append(_NodeProblem(data, v))
    every, counted = problems
    assert counted.data.n <= 12
    assert counted.nll(tensors[v]) == pytest.approx(every.nll(tensors[v]), rel=1e-12)
    assert counted.nll(tensors[v]) == pytest.approx(dense_nll(tree, tensors, X), rel=1e-10)
    np.testing.assert_allclose(counted.data_gradient(tensors[v]), every.data_gradient(tensors[v]), atol=1e-12)


def test_node_problem_reuses_amplitudes_only_for_the_array_it_scored(rng):
    """The gradient after an NLL at the same tensor reuses its amplitudes; any other tensor recomputes."""
    from tnkit.ml.ttn_born_machine import _NodeProblem

    tree = Tree.grid(2, 3)
    X = random_data(rng, 40, DIMS)
    psi = TTN.random(tree, list(DIMS), 3, seed=rng, dtype=np.complex128)
    v = tree.root
    tensors = node_tensors(psi.canonicalize_(v).normalize_())
    data = _TreeData(tree, np.asarray(DIMS), X)
    data.build_inside(tensors)
    problem = _NodeProblem(data, v)
    t1 = tensors[v]
    t2 = t1 + 0.3 * rng.standard_normal(t1.shape)
    problem.nll(t1)
    np.testing.assert_array_equal(problem.data_gradient(t1), data.data_gradient(v, t1))
    np.testing.assert_array_equal(problem.data_gradient(t2), data.data_gradient(v, t2))
    assert np.abs(data.data_gradient(v, t2) - data.data_gradient(v, t1)).max() > 1e-3
    assert problem.nll(t2) == pytest.approx(dense_nll(tree, [*tensors[:v], t2, *tensors[v + 1:]], X), rel=1e-10)


def test_sweep_tour_walks_every_edge_down_and_up():
    tree = Tree.grid(3, 4)
    tour = sweep_tour(tree)
    inner = [v for v in tree.bonds]
    assert tour[0] == tour[-1] == tree.root
    assert len(tour) == 2 * len(inner) + 1
    for a, b in zip(tour, tour[1:]):
        assert tree.parent(a) == b or tree.parent(b) == a
    assert set(tour) == set(tree.internal_nodes)


# --------------------------------------------------------------------------- sampling


def test_sampled_frequencies_match_probabilities(rng):
    X = random_data(rng, 60, DIMS)
    model = TTNBornMachine(max_bond=4, n_sweeps=2, image_shape=(2, 3), random_state=0).fit(X)
    n = 20_000
    samples = model.sample(n, random_state=3)
    configs = all_configurations(DIMS)
    p = np.exp(model.log_prob(configs))
    codes = np.ravel_multi_index(tuple(samples.T), DIMS)
    freq = np.bincount(codes, minlength=len(p)) / n
    bound = 5 * np.sqrt(p * (1 - p) / n) + 1e-4
    assert np.all(np.abs(freq - p[np.ravel_multi_index(tuple(configs.T), DIMS)]) <= bound)


# --------------------------------------------------------------------------- training


def test_sweeps_decrease_nll_on_fixed_data(rng):
    X = random_data(rng, 80, DIMS)
    model = TTNBornMachine(max_bond=4, n_sweeps=5, learning_rate=0.05, image_shape=(2, 3), random_state=2).fit(X)
    nll = model.history_.nll
    assert all(b <= a + 1e-9 for a, b in zip(nll, nll[1:]))
    assert nll[-1] < nll[0]
    assert -model.score(X) == pytest.approx(nll[-1], rel=1e-10)


def test_gradient_trainer_decreases_nll(rng):
    X = random_data(rng, 80, DIMS)
    model = TTNBornMachine(max_bond=4, trainer="gradient", n_epochs=6, batch_size=20, learning_rate=0.02,
                           image_shape=(2, 3), random_state=2)
    start = -TTNBornMachine(max_bond=4, trainer="gradient", n_epochs=1, batch_size=80, learning_rate=1e-9,
                            image_shape=(2, 3), random_state=2).fit(X).score(X)
    model.fit(X)
    assert model.history_.nll[-1] < start - 0.05
    assert -model.score(X) == pytest.approx(model.history_.nll[-1], rel=1e-10)
    assert model.ttn_.is_canonical(model.tree_.root)


def test_bars_and_stripes_reaches_the_data_entropy(bas):
    model, X = bas
    assert -model.score(X) - math.log(30) < 1e-3
    samples = model.sample(10_000, random_state=0)
    valid = {tuple(r) for r in X}
    assert all(tuple(s) in valid for s in samples)
    assert len({tuple(s) for s in samples}) == 30


def test_warm_start_continues_history(rng):
    X = random_data(rng, 30, DIMS)
    model = TTNBornMachine(max_bond=3, n_sweeps=1, image_shape=(2, 3), warm_start=True, random_state=0)
    model.fit(X)
    first = model.ttn_
    model.fit(X)
    assert len(model.history_.nll) == 2 and model.ttn_ is not first
    assert model.history_.nll[1] <= model.history_.nll[0] + 1e-9


def test_batched_sweeps_train(rng):
    X = random_data(rng, 200, DIMS)
    model = TTNBornMachine(max_bond=4, n_sweeps=3, batch_size=50, image_shape=(2, 3), random_state=0).fit(X)
    assert np.isfinite(model.score(X)) and len(model.history_.nll) == 3


def test_tree_held_out_rows_choose_the_start_and_the_kept_fit_is_swept_on_every_row(rng, monkeypatch):
    """With held-out rows every start grows, sweeps and hops on the other rows; the start with the
    lowest held-out NLL is the one swept last, on every row (the history)."""
    import tnkit.ml.ttn_born_machine as module

    X = TTN.random(Tree.balanced(6), 2, 3, seed=rng, dtype=complex).sample(1000, seed=rng)
    split, ends, calls = {}, [], []
    real_split, real_fit, real_sweep = module.split_rows, TTNBornMachine._sweep_fit, TTNBornMachine._sweep

    def spy_split(rows, fraction, generator):
        out = real_split(rows, fraction, generator)
        split["held"] = out[1]
        return out

    def spy_fit(self, *args, **kwargs):
        out = real_fit(self, *args, **kwargs)
        ends.append(out[0])
        return out

    def spy_sweep(self, state, **kwargs):
        calls.append((state, len(kwargs["X"])))
        return real_sweep(self, state, **kwargs)

    monkeypatch.setattr(module, "split_rows", spy_split)
    monkeypatch.setattr(TTNBornMachine, "_sweep_fit", spy_fit)
    monkeypatch.setattr(TTNBornMachine, "_sweep", spy_sweep)
    model = TTNBornMachine(max_bond=3, tree=Tree.balanced(6), n_sweeps=4, hop_sweeps=2, n_hops=2, n_starts=3,
                           random_state=4).fit(X)
    held = split["held"]
    assert len(held) == 100 and len(ends) == 3
    held_nll = [-np.mean(model._state_log_prob(state, held)) for state in ends]
    last_state, last_rows = calls[-1]
    assert last_rows == 1000 and last_state is ends[int(np.argmin(held_nll))]
    assert all(rows == 900 for _, rows in calls[:-1])  # growth, sweeps and hops: the fitting rows only
    assert np.all(np.diff(model.history_.nll) <= 1e-12)
    assert -model.score(X) == pytest.approx(model.history_.nll[-1], rel=1e-10)


def test_tree_starts_are_complete_fits_and_the_lowest_final_nll_wins(rng):
    """Several starts (the machinery shared with the MPS Born machine): each start gets sweeps and hops,
    and without held-out rows the fit with the lowest final training NLL is kept."""
    X = TTN.random(Tree.balanced(6), 2, 3, seed=rng, dtype=complex).sample(600, seed=rng)
    options = dict(max_bond=3, tree=Tree.balanced(6), n_sweeps=4, hop_sweeps=2, n_hops=2, n_starts=3,
                   random_state=4, validation_fraction=None)
    model = TTNBornMachine(**options)
    runs = fit_recording_starts(model, X)
    assert len(runs) == 3
    assert all(len(run) > 2 for run in runs)            # sweeps, then one entry per hop
    assert model.history_.nll == min(runs, key=lambda h: h[-1])
    assert np.all(np.diff(model.history_.nll) <= 1e-12)
    assert -model.score(X) == pytest.approx(model.history_.nll[-1], rel=1e-10)
    assert model.ttn_.is_canonical(model.tree_.root)


def test_tree_hops_keep_only_better_states_and_the_history_never_rises(rng):
    """Each hop adds one history entry, the NLL of the state kept; ``ttn_`` is that state."""
    X = TTN.random(Tree.balanced(6), 2, 3, seed=rng, dtype=complex).sample(600, seed=rng)
    options = dict(max_bond=3, init_bond=3, tree=Tree.balanced(6), n_sweeps=4, n_starts=1, random_state=3,
                   validation_fraction=None)
    plain = TTNBornMachine(n_hops=0, **options).fit(X)
    hopped = TTNBornMachine(n_hops=3, hop_sweeps=3, **options).fit(X)
    nll = np.asarray(hopped.history_.nll)
    assert len(nll) == len(plain.history_.nll) + 3
    np.testing.assert_array_equal(nll[: len(plain.history_.nll)], plain.history_.nll)  # same fit before the hops
    assert np.all(np.diff(nll) <= 1e-12)
    assert -hopped.score(X) == pytest.approx(nll[-1], rel=1e-10)
    assert nll[-1] < nll[len(plain.history_.nll) - 1]  # on this data some hop finds a better minimum


def test_bonds_grow_in_stages_until_the_held_out_nll_stops_falling(rng):
    """From ``init_bond`` the bonds grow in stages; the stage kept is the last one within noise of the
    lowest held-out NLL, growth stops two stages after it, and the kept stage's state is carried on to
    the sweeps on every row."""
    tree = Tree.balanced(8)
    X = TTN.random(tree, 2, 2, seed=rng, dtype=complex).sample(1500, seed=rng)
    model = TTNBornMachine(max_bond=6, tree=tree, n_hops=0, n_starts=1, random_state=0).fit(X)
    rows = model.growth_
    bonds = [row["bond"] for row in rows]
    assert bonds[0] == 2 and bonds == sorted(set(bonds)) and len(rows) >= 2
    scores = [row["validation_nll"] for row in rows]
    kept = [k for k, row in enumerate(rows) if row["kept"]]
    assert len(kept) == 1 and kept[0] >= int(np.argmin(scores))
    assert model.ttn_.max_bond_dim == rows[kept[0]]["bond"]
    assert bonds[-1] < 6 and len(rows) == kept[0] + 3  # the true bond is 2: growth stopped early
    assert min(scores[kept[0] + 1 :]) > min(scores)  # and the stages after the kept one were worse
    assert np.all(np.diff(model.history_.nll) <= 1e-12)  # the sweeps on every row after growth
    assert -model.score(X) == pytest.approx(model.history_.nll[-1], rel=1e-10)


def test_the_stage_kept_is_the_largest_within_one_standard_error_of_the_lowest():
    from tnkit.ml.born_machine import largest_within_noise

    noise = np.random.default_rng(0).standard_normal(400)
    base = 5.0 + noise
    slightly_worse = base + 0.002 + 0.1 * np.random.default_rng(1).standard_normal(400)  # SE 0.005: within
    clearly_worse = base + 0.05
    assert largest_within_noise([base + 0.3, base, slightly_worse]) == 2
    assert largest_within_noise([base + 0.3, base, slightly_worse, clearly_worse]) == 2
    assert largest_within_noise([base + 0.3, base, clearly_worse]) == 1
    assert largest_within_noise([base]) == 0


def test_rows_of_probability_zero_rank_fits_before_the_mean():
    """A held-out row a fit gives probability zero (NLL inf) counts first; the rest is compared as usual."""
    from tnkit.ml.born_machine import held_out_rank, largest_within_noise

    base = 5.0 + np.random.default_rng(0).standard_normal(400)
    one_zero, two_zeros = base.copy(), base - 0.5
    one_zero[3] = np.inf
    two_zeros[[3, 7]] = np.inf
    assert held_out_rank(base) == (0, pytest.approx(base.mean()))
    assert held_out_rank(one_zero)[0] == 1 and np.isfinite(held_out_rank(one_zero)[1])
    assert held_out_rank(np.full(5, np.inf)) == (5, np.inf)
    # fewer rows of probability zero wins, even against a lower mean of the other rows
    assert largest_within_noise([one_zero, two_zeros]) == 0
    assert largest_within_noise([two_zeros, one_zero]) == 1
    # every stage has the same zero row: the larger stage within noise on the other rows is kept
    slightly_worse = one_zero + 0.002 + 0.1 * np.random.default_rng(1).standard_normal(400)
    assert largest_within_noise([one_zero + 0.3, one_zero, slightly_worse]) == 2
    assert largest_within_noise([one_zero + 0.3, one_zero, one_zero + 0.05]) == 1


def test_without_held_out_rows_the_bonds_grow_to_max_bond(rng):
    X = random_data(rng, 40, DIMS)  # 4 held-out rows would be too few: none are held out
    model = TTNBornMachine(max_bond=4, image_shape=(2, 3), n_sweeps=3, n_starts=1, random_state=0).fit(X)
    assert [row["bond"] for row in model.growth_] == [2, 3]  # the last stage is the sweeps on every row
    assert all(math.isnan(row["validation_nll"]) for row in model.growth_)
    assert model.ttn_.max_bond_dim == 4 and model.growth_[-1]["kept"]
    no_growth = TTNBornMachine(max_bond=4, init_bond=4, image_shape=(2, 3), n_sweeps=3, random_state=0).fit(X)
    assert no_growth.growth_ == [] and no_growth.ttn_.max_bond_dim == 4


# --------------------------------------------------------------------------- persistence and checks


def test_save_load_identical_log_probs(bas, tmp_path):
    model, X = bas
    path = model.save(tmp_path / "ttn_born")
    loaded = TTNBornMachine.load(path)
    np.testing.assert_array_equal(loaded.log_prob(X), model.log_prob(X))
    assert loaded.get_params() == model.get_params()
    assert loaded.history_.nll == model.history_.nll and loaded.tree_ == model.tree_


def test_save_load_explicit_tree(rng, tmp_path):
    tree = Tree.from_nested((0, ((1, 2), 3), (4, 5)))
    X = random_data(rng, 20, DIMS)
    model = TTNBornMachine(max_bond=3, n_sweeps=1, tree=tree, random_state=0).fit(X)
    loaded = TTNBornMachine.load(model.save(tmp_path / "m.npz"))
    assert loaded.tree == tree
    np.testing.assert_array_equal(loaded.log_prob(X), model.log_prob(X))


def test_load_rejects_other_kinds(tmp_path, bas):
    model, _ = bas
    path = model.ttn_.save(tmp_path / "plain")
    with pytest.raises(SchemaError):
        TTNBornMachine.load(path)


BAD_ARGUMENTS = [
    (dict(trainer="adam"), OptionError, "trainer"),
    (dict(learning_rate=-1.0), ValueError, "learning_rate"),
    (dict(max_bond=0), ValueError, "max_bond"),
    (dict(n_starts=0), ValueError, "n_starts"),
    (dict(n_hops=-1), ValueError, "n_hops"),
    (dict(n_starts="all"), TypeError, "n_starts"),
    (dict(hop_sweeps=0), ValueError, "hop_sweeps"),
    (dict(init_bond=0), ValueError, "init_bond"),
    (dict(validation_fraction=0.95), ValueError, "validation_fraction"),
    (dict(validation_fraction=-0.1), ValueError, "validation_fraction"),
    (dict(tree=Tree.grid(2, 2)), ValueError, "`tree` has 4 leaves"),
    (dict(image_shape=(3, 3)), ValueError, "image_shape"),
]


@pytest.mark.parametrize("options, error, match", BAD_ARGUMENTS)
def test_bad_arguments_are_named(rng, options, error, match):
    X = random_data(rng, 10, DIMS)
    with pytest.raises(error, match=match):
        TTNBornMachine(**options).fit(X)


def test_values_outside_the_fitted_categories_are_named(rng):
    X = random_data(rng, 10, DIMS)
    model = TTNBornMachine(max_bond=2, n_sweeps=1, random_state=0).fit(X)
    bad = X.copy()
    bad[0, 1] = 3
    with pytest.raises(ValueError, match=r"`X`\[0, 1\] = 3"):
        model.log_prob(bad)


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 7), st.integers(1, 4), st.integers(0, 10_000))
def test_normalisation_property(n_leaves, bond, seed):
    """For any balanced tree, bond and state, p sums to one over all configurations."""
    gen = np.random.default_rng(seed)
    dims = tuple(int(d) for d in gen.integers(2, 4, n_leaves))
    model = fitted_random(gen, Tree.balanced(n_leaves), dims, bond)
    assert np.exp(model.log_prob(all_configurations(dims))).sum() == pytest.approx(1.0, abs=1e-10)


def test_verbose_progress_bar_shows_the_nll(rng, capsys):
    X = random_data(rng, 20, DIMS)
    TTNBornMachine(max_bond=2, n_sweeps=2, image_shape=(2, 3), verbose=True, random_state=0).fit(X)
    err = capsys.readouterr().err
    assert "Born machine" in err and "nll=" in err


# --------------------------------------------------------------------------- conditionals


TREES = [Tree.grid(2, 3), Tree.balanced(6, arity=3), Tree.from_nested((0, ((1, 2), 3), (4, 5)))]


def dense_table(model) -> np.ndarray:
    v = model.ttn_.to_dense()
    return v**2 / np.sum(v**2)


@pytest.mark.parametrize("tree", TREES)
def test_log_marginal_matches_dense_sums(rng, tree):
    model = fitted_random(rng, tree, DIMS)
    P = dense_table(model)
    X = random_data(rng, 8, DIMS)
    observed = rng.random((8, 6)) < 0.5
    expected = [np.log(P[tuple(x[i] if o[i] else slice(None) for i in range(6))].sum()) for x, o in zip(X, observed)]
    np.testing.assert_allclose(model.log_marginal(X, observed), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.log_marginal(X, np.ones(6, bool)), model.log_prob(X), rtol=1e-12)


@pytest.mark.parametrize("tree", TREES)
def test_conditional_samples_follow_the_exact_conditional(rng, tree):
    model = fitted_random(rng, tree, DIMS)
    P = dense_table(model)
    observed = np.array([True, False, False, True, False, True])
    x = np.array([1, 0, 0, 1, 0, 2])
    n = 20_000
    S = model.conditional_sample(np.tile(x, (n, 1)), observed, random_state=1)
    assert np.all(S[:, observed] == x[observed])
    cond = P[1, :, :, 1, :, 2] / P[1, :, :, 1, :, 2].sum()
    freq = np.zeros_like(cond)
    np.add.at(freq, (S[:, 1], S[:, 2], S[:, 4]), 1)
    assert np.all(np.abs(freq / n - cond) <= 5 * np.sqrt(cond * (1 - cond) / n) + 1e-4)


@pytest.mark.parametrize("tree", TREES)
def test_greedy_inpainting_takes_the_argmax_leaf_by_leaf_in_tree_order(rng, tree):
    model = fitted_random(rng, tree, DIMS)
    P = dense_table(model)
    observed = np.array([False, True, False, False, True, False])
    x = np.array([0, 2, 0, 0, 1, 0])
    fixed = {1: 2, 4: 1}
    for leaf in tree.leaves_under(tree.root):  # depth-first leaf order
        if leaf in fixed:
            continue
        marg = [P[tuple(fixed.get(i, s) if i in fixed or i == leaf else slice(None) for i in range(6))].sum()
                for s in range(DIMS[leaf])]
        fixed[leaf] = int(np.argmax(marg))
    expected = [fixed[i] for i in range(6)]
    np.testing.assert_array_equal(model.inpaint(x[None], observed)[0], expected)


def test_bars_and_stripes_inpainting_recovers_patterns(bas):
    model, X = bas
    valid = {tuple(r) for r in X}
    top_half = np.arange(16) < 8
    assert all(tuple(r) in valid for r in model.inpaint(X, top_half))
    assert all(tuple(r) in valid for r in model.inpaint(X, top_half, method="sample", random_state=0))
    top_row = np.arange(16) < 4
    bars = X[[len(set(p[:4].tolist())) > 1 for p in X]]  # a mixed top row: only bars explain it
    np.testing.assert_array_equal(model.inpaint(bars, top_row), bars)


def test_conditionals_check_their_arguments_and_score_impossible_patterns_low(bas):
    model, X = bas
    bad = X[:1].copy()
    bad[0, :4] = [1, 0, 1, 0]
    bad[0, 4:8] = [0, 1, 0, 1]  # neither bars nor stripes
    observed = np.arange(16) < 8
    assert model.log_marginal(bad, observed)[0] < -20
    with pytest.raises(OptionError, match="method"):
        model.inpaint(X, observed, method="best")
    with pytest.raises(ValueError, match="observed"):
        model.inpaint(X, np.ones(15, bool))
