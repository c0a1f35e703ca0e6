"""MPSBornMachine against dense references: normalisation, sampling, marginals,
conditionals, inpainting, save/load and argument checks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import all_configurations, fit_recording_starts
from hypothesis import given, settings
from hypothesis import strategies as st

import tnkit
from tnkit.datasets import bars_and_stripes
from tnkit.errors import OptionError, SchemaError
from tnkit.ml import MPSBornMachine
from tnkit.ml.born_machine import check_discrete_data


def fitted_random(rng, dims, bond=4, dtype=np.float64) -> MPSBornMachine:
    """A 'fitted' model holding a random MPS with per-site dimensions ``dims``."""
    model = MPSBornMachine()
    model.mps_ = tnkit.MPS.random(len(dims), bond, phys_dim=list(dims), seed=rng, dtype=dtype)
    model.n_categories_ = np.asarray(dims)
    model.n_features_in_ = len(dims)
    return model


def dense_p(model) -> np.ndarray:
    """The dense table p(x) over all configurations (site 0 slowest)."""
    v = np.abs(model.mps_.to_dense()) ** 2
    p = v / np.sum(v)
    return p.reshape(tuple(model.n_categories_))


@pytest.fixture(scope="module")
def bas_model():
    X = bars_and_stripes(4)
    return MPSBornMachine(max_bond=32, init_bond=16, n_sweeps=2, random_state=0).fit(X), X


# --------------------------------------------------------------------------- likelihood


@pytest.mark.parametrize("dims", [(2,) * 7, (3, 2, 4, 2, 3)])
def test_probabilities_sum_to_one(rng, dims):
    model = fitted_random(rng, dims)
    configs = all_configurations(dims)
    p = np.exp(model.log_prob(configs))
    assert abs(p.sum() - 1.0) < 1e-12
    np.testing.assert_allclose(p, dense_p(model).ravel(), rtol=1e-10)
    assert model.score(configs) == pytest.approx(np.mean(np.log(p)))
    np.testing.assert_array_equal(model.score_samples(configs), model.log_prob(configs))


def test_log_prob_safe_on_long_chains(rng):
    model = fitted_random(rng, (2,) * 600, bond=6)
    x = rng.integers(0, 2, size=(5, 600))
    log_p = model.log_prob(x)
    assert np.all(np.isfinite(log_p)) and np.all(log_p < -100)   # p far below the float range
    # the chain rule through the conditionals gives the same value
    cond = model.log_marginal(x, np.ones(600, dtype=bool))
    np.testing.assert_allclose(cond, log_p, rtol=1e-9)


# --------------------------------------------------------------------------- sampling


def test_sample_frequencies_match_probabilities(rng):
    dims = (2, 3, 2, 2)
    model = fitted_random(rng, dims, bond=3)
    n = 40_000
    samples = model.sample(n, random_state=1)
    assert samples.shape == (n, 4)
    p = dense_p(model).ravel()
    codes = np.ravel_multi_index(samples.T, dims)
    freq = np.bincount(codes, minlength=p.size) / n
    sigma = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) <= 5 * sigma + 1e-12)


def test_sampling_is_reproducible(rng):
    model = fitted_random(rng, (2,) * 6)
    np.testing.assert_array_equal(model.sample(50, random_state=3), model.sample(50, random_state=3))


# --------------------------------------------------------------------------- marginals and conditionals


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("sites", [[0], [4], [1, 3], [3, 1], [0, 2, 5]])
def test_marginal_matches_dense(rng, sites, dtype):
    dims = (2, 3, 2, 2, 3, 2)
    model = fitted_random(rng, dims, dtype=dtype)
    p = dense_p(model)
    rest = tuple(k for k in range(len(dims)) if k not in sites)
    expected = p.sum(axis=rest)
    # np.sum keeps the remaining axes in increasing order; reorder to `sites`
    order = np.argsort(np.argsort(sites))
    expected = np.transpose(expected, order)
    got = model.marginal(sites)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)
    assert abs(got.sum() - 1) < 1e-12


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), mask_bits=st.integers(0, 2**6 - 1))
def test_log_marginal_per_row_masks(seed, mask_bits):
    """Property: the marginal of any observed subset equals the dense sum."""
    rng = np.random.default_rng(seed)
    dims = (2, 2, 3, 2, 2, 2)
    model = fitted_random(rng, dims, bond=3)
    observed = np.array([(mask_bits >> k) & 1 for k in range(6)], dtype=bool)
    x = np.array([rng.integers(0, d) for d in dims])[None, :]
    p = dense_p(model)
    index = tuple(x[0, k] if observed[k] else slice(None) for k in range(6))
    expected = np.sum(p[index])
    got = np.exp(model.log_marginal(x, observed))[0]
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_conditional_sample_matches_conditional(rng, dtype):
    """The engine's conditional sampler (:func:`tnkit.mps.sampling.complete`), real and complex."""
    dims = (2, 2, 2, 2, 2)
    model = fitted_random(rng, dims, bond=3, dtype=dtype)
    observed = np.array([False, True, False, True, False])
    x = np.array([0, 1, 0, 0, 0])
    n = 20_000
    out = model.conditional_sample(np.tile(x, (n, 1)), observed, random_state=2)
    assert np.all(out[:, 1] == 1) and np.all(out[:, 3] == 0)
    p = dense_p(model)[:, 1, :, 0, :]
    p = (p / p.sum()).ravel()
    codes = np.ravel_multi_index(out[:, [0, 2, 4]].T, (2, 2, 2))
    freq = np.bincount(codes, minlength=8) / n
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12)


def test_conditional_sample_per_row_masks_keep_observed(rng):
    model = fitted_random(rng, (2,) * 8)
    X = rng.integers(0, 2, size=(30, 8))
    observed = rng.random((30, 8)) < 0.5
    out = model.conditional_sample(X, observed, random_state=0)
    np.testing.assert_array_equal(out[observed], X[observed])


def test_greedy_inpaint_is_argmax_for_one_free_site(rng):
    dims = (2, 3, 2, 2)
    model = fitted_random(rng, dims)
    observed = np.array([True, False, True, True])
    X = all_configurations(dims)
    out = model.inpaint(X, observed)
    p = dense_p(model)
    best = np.argmax(p[X[:, 0], :, X[:, 2], X[:, 3]], axis=1)
    np.testing.assert_array_equal(out[:, 1], best)


def test_inpainting_recovers_bars_and_stripes(bas_model):
    model, X = bas_model
    observed = np.zeros(16, dtype=bool)
    observed[:8] = True                                  # top two rows seen
    matches = (X[:, None, :8] == X[None, :, :8]).all(axis=2).sum(axis=1)
    unique = matches == 1                                # the top half fixes the pattern
    assert unique.sum() == 14                            # the 14 bars that are not all-0/all-1
    valid = {tuple(r) for r in X}
    for method in ("greedy", "sample"):
        out = model.inpaint(X, observed, method=method, random_state=0)
        assert all(tuple(r) in valid for r in out)
        np.testing.assert_array_equal(out[unique], X[unique])
        np.testing.assert_array_equal(out[:, :8], X[:, :8])


def test_bas_fit_reaches_entropy_and_samples_are_valid(bas_model):
    model, X = bas_model
    assert abs(-model.score(X) - np.log(30)) < 1e-3
    assert len(model.history_.nll) == 2
    samples = model.sample(3000, random_state=0)
    valid = {tuple(r) for r in X}
    assert all(tuple(r) in valid for r in samples)
    assert len({tuple(r) for r in samples}) == 30


# --------------------------------------------------------------------------- persistence


def test_save_load_gives_identical_log_probabilities(bas_model, tmp_path):
    model, X = bas_model
    path = model.save(tmp_path / "bm")
    assert path.suffix == ".npz"
    back = MPSBornMachine.load(path)
    np.testing.assert_array_equal(back.log_prob(X), model.log_prob(X))
    assert back.get_params() == {**model.get_params(), "random_state": 0}
    assert back.history_.nll == model.history_.nll
    with pytest.raises(SchemaError, match="MatrixProductState"):
        tnkit.MPS.save(model.mps_, tmp_path / "psi")
        MPSBornMachine.load(tmp_path / "psi.npz")


def test_warm_start_continues(rng):
    X = bars_and_stripes(3)
    model = MPSBornMachine(max_bond=8, n_sweeps=1, warm_start=True, random_state=0).fit(X)
    first = model.history_.nll[-1]
    model.fit(X)
    assert len(model.history_.nll) == 2 and model.history_.nll[-1] < first


# --------------------------------------------------------------------------- several starts


def test_best_of_several_starts_is_continued(rng):
    """The first start is the single-start fit's; the kept one has the lowest NLL after ``start_sweeps``."""
    true = tnkit.MPS.random(8, 3, seed=rng)
    X = true.sample(1000, seed=rng)
    options = dict(max_bond=3, start_sweeps=2, n_sweeps=4, tol=None, random_state=5, validation_fraction=None)
    single = MPSBornMachine(n_starts=1, **options).fit(X)
    several = MPSBornMachine(n_starts=3, **options).fit(X)
    assert len(several.history_.nll) == 4
    assert several.history_.nll[1] <= single.history_.nll[1] + 1e-12
    assert np.all(np.diff(several.history_.nll) <= 1e-9)
    assert np.isclose(-several.score(X), several.history_.nll[-1])


def test_default_starts_are_complete_fits_and_the_lowest_final_nll_wins(rng):
    """``start_sweeps=None`` (default): each start gets the whole fit (sweeps and hops) and the fit
    with the lowest final training NLL is kept (a choice after a few sweeps keeps the start that
    leads early, which need not end lowest)."""
    X = tnkit.MPS.random(8, 3, seed=rng).sample(1000, seed=rng)
    options = dict(max_bond=3, n_sweeps=6, hop_sweeps=3, n_hops=2, n_starts=3, random_state=4,
                   validation_fraction=None)
    model = MPSBornMachine(**options)
    runs = fit_recording_starts(model, X)
    assert len(runs) == 3
    assert all(len(run) > 6 for run in runs)            # sweeps, then at least one hop entry
    assert model.history_.nll == min(runs, key=lambda h: h[-1])
    assert np.all(np.diff(model.history_.nll) <= 1e-12)
    assert np.isclose(-model.score(X), model.history_.nll[-1])


def test_held_out_rows_choose_the_fit_and_the_bond(rng, tmp_path):
    """With held-out rows each bond level's starts are compared by held-out NLL, levels go down
    from ``max_bond`` through the growth stages, and the kept fit (its level's best) is swept on
    every row (its history), capped at its bond."""
    X = tnkit.MPS.random(8, 3, seed=rng).sample(1000, seed=rng)
    options = dict(max_bond=4, n_sweeps=8, n_hops=0, n_starts=2, random_state=2)
    model = MPSBornMachine(**options).fit(X)
    rows = model.selection_
    levels = sorted({row["bond"] for row in rows}, reverse=True)
    assert levels[0] == 4 and [row["start"] for row in rows] == [0, 1] * len(levels)
    assert sum(row["kept"] for row in rows) == 1
    kept = next(row for row in rows if row["kept"])
    best = {b: min((r for r in rows if r["bond"] == b), key=lambda r: r["validation_nll"]) for b in levels}
    assert kept is best[kept["bond"]]
    assert max(model.mps_.bond_dims) <= kept["bond"]
    assert np.isclose(-model.score(X), model.history_.nll[-1])  # the history is the sweeps on every row
    assert np.all(np.diff(model.history_.nll) <= 1e-9)
    assert levels == list(range(4, levels[-1] - 1, -1))  # the stages 2, 3, 4 taken downwards
    back = MPSBornMachine.load(model.save(tmp_path / "selected.npz"))
    assert back.selection_ == rows and back.validation_fraction == 0.1
    off = MPSBornMachine(validation_fraction=None, **options).fit(X)
    assert off.selection_ == [] and max(off.mps_.bond_dims) <= 4
    small = MPSBornMachine(**options).fit(X[:400])  # 40 held-out rows are too few: nothing is held out
    assert small.selection_ == []


# --------------------------------------------------------------------------- basin hopping


def test_hops_keep_only_better_states_and_the_history_never_rises(rng):
    """Each hop adds one history entry, the NLL of the state kept; ``mps_`` is that state."""
    from tnkit.ml.born_machine import perturbed

    X = tnkit.MPS.random(8, 3, seed=rng).sample(1000, seed=rng)
    options = dict(max_bond=3, n_sweeps=6, n_starts=1, random_state=3, validation_fraction=None)
    plain = MPSBornMachine(n_hops=0, **options).fit(X)
    hopped = MPSBornMachine(n_hops=3, hop_sweeps=4, **options).fit(X)
    nll = np.asarray(hopped.history_.nll)
    assert len(nll) == len(plain.history_.nll) + 3  # n_hops=3: one entry per hop
    np.testing.assert_array_equal(nll[: len(plain.history_.nll)], plain.history_.nll)  # same fit before the hops
    assert np.all(np.diff(nll) <= 1e-12)
    assert np.isclose(-hopped.score(X), nll[-1])
    noisy = perturbed(plain.mps_, 0.3, np.random.default_rng(0))
    rel = [np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(noisy.tensors, plain.mps_.tensors)]
    assert 0.1 < np.median(rel) < 0.6 and all(np.iscomplexobj(t) for t in noisy.tensors)


def test_every_hop_runs_even_after_rejected_ones(rng):
    """All ``n_hops`` hops run: a fit at its best minimum rejects them, and still makes every one.

    A rule that stopped after three hops gaining less than 1e-3 nats together ended a
    16-feature, bond-8 fit at a held-out gap of 0.072; its later hops reach 0.050.
    """
    X = tnkit.MPS.random(6, 2, seed=rng).sample(500, seed=rng)
    options = dict(max_bond=2, n_sweeps=40, n_starts=1, random_state=0, hop_sweeps=2,
                   validation_fraction=None)
    plain = MPSBornMachine(n_hops=0, **options).fit(X)
    hopped = MPSBornMachine(n_hops=6, **options).fit(X)
    nll = np.asarray(hopped.history_.nll)
    assert len(nll) == len(plain.history_.nll) + 6
    assert nll[len(plain.history_.nll) - 1] - nll[-1] < 1e-3  # the hops gained (almost) nothing


# --------------------------------------------------------------------------- errors


def test_bad_arguments_are_named(rng):
    X = bars_and_stripes(3)
    with pytest.raises(OptionError, match="trainer"):
        MPSBornMachine(trainer="adam").fit(X)
    with pytest.raises(ValueError, match="learning_rate"):
        MPSBornMachine(learning_rate=-1).fit(X)
    with pytest.raises(TypeError, match="normalized_gradient"):
        MPSBornMachine(normalized_gradient="yes").fit(X)
    with pytest.raises(TypeError, match="max_bond"):
        MPSBornMachine(max_bond=2.5).fit(X)
    with pytest.raises(ValueError, match="n_starts"):
        MPSBornMachine(n_starts=0).fit(X)
    with pytest.raises(ValueError, match="start_sweeps"):
        MPSBornMachine(start_sweeps=0).fit(X)
    with pytest.raises(ValueError, match="n_hops"):
        MPSBornMachine(n_hops=-1).fit(X)
    with pytest.raises(TypeError, match="n_hops"):
        MPSBornMachine(n_hops="many").fit(X)
    with pytest.raises(ValueError, match="hop_size"):
        MPSBornMachine(hop_size=0.0).fit(X)
    with pytest.raises(ValueError, match="whole numbers"):
        MPSBornMachine().fit(X + 0.5)
    with pytest.raises(ValueError, match="2-d"):
        MPSBornMachine().fit(X[0])
    model = MPSBornMachine(max_bond=4, n_sweeps=1).fit(X)
    with pytest.raises(ValueError, match=r"`X`\[0, 2\] = 2 is not a value of feature 2"):
        model.log_prob(np.array([[0, 0, 2, 0, 0, 0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="observed"):
        model.inpaint(X, np.ones(4, dtype=bool))
    with pytest.raises(TypeError, match="observed"):
        model.inpaint(X, np.ones(9))
    with pytest.raises(OptionError, match="method"):
        model.inpaint(X, np.ones(9, dtype=bool), method="map")
    with pytest.raises(ValueError, match="sites"):
        model.marginal([1, 1])


def test_unfitted_raises():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        MPSBornMachine().sample(3)


def test_check_discrete_data_accepts_bool_and_whole_floats():
    np.testing.assert_array_equal(check_discrete_data("X", np.array([[True, False]])), [[1, 0]])
    np.testing.assert_array_equal(check_discrete_data("X", np.array([[1.0, 2.0]])), [[1, 2]])
    with pytest.raises(ValueError, match="non-negative"):
        check_discrete_data("X", np.array([[-1, 0]]))


def test_auto_search_effort_follows_the_number_of_features(monkeypatch):
    """``n_starts``/``n_hops`` "auto": three starts and twelve hops up to 32 features, one start and no hops above."""
    from tnkit.ml import TTNBornMachine, born_machine

    assert born_machine.search_effort(12) == {"n_starts": 3, "n_hops": 12}
    assert born_machine.search_effort(born_machine.SEARCH_FEATURE_LIMIT) == {"n_starts": 3, "n_hops": 12}
    assert born_machine.search_effort(born_machine.SEARCH_FEATURE_LIMIT + 1) == {"n_starts": 1, "n_hops": 0}
    seen = []
    original = born_machine.BornMachineBase._start_fit

    def spy(self, X, attr):
        params, warm, X, rng = original(self, X, attr)
        seen.append((type(self).__name__, X.shape[1], params["n_starts"], params["n_hops"]))
        return params, warm, X, rng

    monkeypatch.setattr(born_machine.BornMachineBase, "_start_fit", spy)
    rng = np.random.default_rng(0)
    for n_features in (6, 40):
        X = rng.integers(0, 2, (60, n_features))
        MPSBornMachine(max_bond=2, n_sweeps=2, hop_sweeps=1, validation_fraction=None, random_state=0).fit(X)
        TTNBornMachine(max_bond=2, n_sweeps=2, hop_sweeps=1, validation_fraction=None, random_state=0).fit(X)
    MPSBornMachine(max_bond=2, n_sweeps=2, hop_sweeps=1, n_starts=2, n_hops=1, random_state=0).fit(X)
    assert seen == [("MPSBornMachine", 6, 3, 12), ("TTNBornMachine", 6, 3, 12),
                    ("MPSBornMachine", 40, 1, 0), ("TTNBornMachine", 40, 1, 0), ("MPSBornMachine", 40, 2, 1)]
    assert MPSBornMachine().get_params()["n_starts"] == "auto" == TTNBornMachine().get_params()["n_hops"]
