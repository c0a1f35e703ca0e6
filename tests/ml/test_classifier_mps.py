"""MPSClassifier: dense references, gradients, sweeps, scikit-learn conventions, save/load."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import (
    assert_close_rtol,
    assert_gradients_match_finite_differences,
    classifier_loss,
    dense_feature_outputs,
)

from tnkit.errors import OptionError, SchemaError
from tnkit.ml import MPSClassifier
from tnkit.ml.chain import (
    chain_gradients,
    chain_outputs,
    init_tensors,
    input_gradients,
    raw_chain_outputs,
)
from tnkit.ml.chain_sweeps import sweep_fit
from tnkit.ml.feature_maps import embed
from tnkit.ml.losses import normalize_outputs
from tnkit.ml.optim import scheduled_learning_rate


def _random_chain(rng, n=5, d=2, k=3, bond=3, label_site=2):
    bonds = [1] + [bond] * (n - 1) + [1]
    tensors = []
    for i in range(n):
        shape = (bonds[i], d, bonds[i + 1]) + ((k,) if i == label_site else ())
        tensors.append(rng.standard_normal(shape))
    return tensors


def _dense_weights(tensors, label_site):
    """Dense ``W[s_0, ..., s_{N-1}, k]`` by one plain ``np.einsum`` over the whole chain."""
    n = len(tensors)
    bonds, phys = "abcdefghij"[: n + 1], "pqrstuvwxy"[:n]
    terms = [bonds[i] + phys[i] + bonds[i + 1] + ("K" if i == label_site else "") for i in range(n)]
    w = np.einsum(",".join(terms) + "->" + bonds[0] + phys + "K" + bonds[n], *tensors)
    return w[0, ..., 0]


def _dense_outputs(tensors, label_site, phi):
    return dense_feature_outputs(_dense_weights(tensors, label_site), phi)


@pytest.fixture
def digits_small():
    from sklearn.model_selection import train_test_split

    from tnkit.datasets import load_digits

    X, y = load_digits()
    return train_test_split(X, y, test_size=0.25, random_state=0)


def _unit(f):
    return f / np.linalg.norm(f, axis=1, keepdims=True)


def test_chain_outputs_match_dense(rng):
    tensors = _random_chain(rng)
    phi = embed(rng.random((7, 5)))
    for site in (0, 2, 4):
        t = _random_chain(np.random.default_rng(site), label_site=site)
        assert_close_rtol(chain_outputs(t, site, phi), _unit(_dense_outputs(t, site, phi)))
        assert_close_rtol(raw_chain_outputs(t, site, phi), _dense_outputs(t, site, phi))
    assert_close_rtol(chain_outputs(tensors, 2, phi), _unit(_dense_outputs(tensors, 2, phi)))


def test_outputs_of_a_long_chain_stay_finite_and_learnable(rng):
    """196 sites (MNIST 14x14): raw outputs span decades, directions do not underflow."""
    X = rng.random((64, 196)) * (rng.random((64, 196)) < 0.3)
    phi = embed(X)
    tensors = init_tensors(196, 2, 10, 4, rng, label_site=0)
    u = chain_outputs(tensors, 0, phi)
    assert np.all(np.isfinite(u))
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-12)
    raw = raw_chain_outputs(tensors, 0, phi)
    assert_close_rtol(normalize_outputs(raw)[0], u, 1e-8)


@pytest.mark.parametrize("loss", ["squared", "cross-entropy"])
@pytest.mark.parametrize("label_site", [0, 2, 4])
def test_gradients_match_finite_differences(rng, loss, label_site):
    tensors = _random_chain(rng, label_site=label_site)
    phi = embed(rng.random((6, 5)))
    Y = np.eye(3)[rng.integers(0, 3, 6)]
    value, grads = chain_gradients(tensors, label_site, phi, Y, loss=loss, alpha=0.1)
    assert_gradients_match_finite_differences(
        lambda ts: chain_gradients(ts, label_site, phi, Y, loss=loss, alpha=0.1)[0], tensors, grads,
        checks_per_tensor=6,
    )
    u = _unit(_dense_outputs(tensors, label_site, phi))
    reg = 0.05 * sum(np.sum(t * t) for t in tensors)
    assert_close_rtol(value, classifier_loss(u, Y, loss) + reg)


def test_gradients_with_temperature_match_finite_differences(rng):
    tensors = _random_chain(rng, label_site=2)
    phi = embed(rng.random((6, 5)))
    Y = np.eye(3)[rng.integers(0, 3, 6)]
    value, grads = chain_gradients(tensors, 2, phi, Y, loss="cross-entropy", temperature=7.0)
    assert_gradients_match_finite_differences(
        lambda ts: chain_gradients(ts, 2, phi, Y, loss="cross-entropy", temperature=7.0)[0], tensors, grads,
        checks_per_tensor=4,
    )
    u = _unit(_dense_outputs(tensors, 2, phi))
    assert_close_rtol(value, classifier_loss(7.0 * u, Y, "cross-entropy"))


def test_input_gradients_give_exact_occlusion(rng):
    tensors = _random_chain(rng, label_site=1)
    phi = embed(rng.random((4, 5)))
    G = rng.standard_normal((4, 3))
    grads = input_gradients(tensors, 1, phi, G)
    base = np.sum(raw_chain_outputs(tensors, 1, phi) * G, axis=1)
    for i in range(5):
        changed = phi.copy()
        changed[:, i] = [1.0, 0.0]
        new = np.sum(raw_chain_outputs(tensors, 1, changed) * G, axis=1)
        assert_close_rtol(new - base, np.einsum("bs,bs->b", grads[:, i], changed[:, i] - phi[:, i]))


@pytest.mark.parametrize("local_solver", ["least-squares", "gradient"])
@pytest.mark.parametrize("loss", ["squared", "cross-entropy"])
def test_sweeps_never_increase_training_loss(rng, loss, local_solver):
    n, k = 8, 3
    X = rng.random((40, n))
    y = (X[:, :3].sum(axis=1) * k / 3).astype(int) % k
    Y = np.eye(k)[y]
    phi = embed(X)
    tensors = init_tensors(n, 2, k, 2, rng)
    loss_fn = __import__("tnkit.ml.losses", fromlist=["normalized_loss"]).normalized_loss(loss)
    previous = loss_fn(chain_outputs(tensors, 0, phi), Y)[0]
    label = 0
    for _ in range(4):
        tensors, label, history = sweep_fit(tensors, label, phi, Y, n_sweeps=1, max_bond=None, cutoff=1e-14,
                                            loss=loss, local_steps=4, alpha=0.0, learning_rate=0.5,
                                            local_solver=local_solver)
        current = loss_fn(chain_outputs(tensors, label, phi), Y)[0]
        assert_close_rtol(history[0]["loss"], current, 1e-8)
        assert current <= previous + 1e-9
        previous = current


@pytest.mark.parametrize("solver", ["sweep", "adam"])
def test_fit_on_digits_keeps_canonical_form_and_learns(digits_small, solver):
    Xtr, Xte, ytr, yte = digits_small
    kwargs = dict(n_sweeps=2, local_steps=6) if solver == "sweep" else dict(n_epochs=4, loss="cross-entropy")
    n = 500 if solver == "sweep" else len(Xtr)
    clf = MPSClassifier(max_bond=8, solver=solver, random_state=0, **kwargs).fit(Xtr[:n], ytr[:n])
    # chance is 0.1; before the label moved to the middle, Adam reached 0.58 here
    assert clf.score(Xte, yte) > (0.7 if solver == "sweep" else 0.88)
    psi = clf.to_mps()
    assert psi.is_canonical(clf.label_site_)
    assert max(clf.bond_dims_) <= 8
    if solver == "adam":  # the label starts in the middle of the chain (short gradient paths)
        assert clf.label_site_ == 32
    entropy = clf.entanglement_entropy()
    assert entropy.shape == (63,) and np.all(entropy >= -1e-12)
    assert entropy.max() <= np.log(8) + 1e-9


def test_entanglement_entropy_matches_dense_svd(rng):
    X = rng.random((30, 6))
    y = (X[:, 0] > 0.5).astype(int)
    clf = MPSClassifier(solver="sweep", max_bond=4, n_sweeps=1, random_state=0).fit(X, y)
    w = _dense_weights(clf.tensors_, clf.label_site_)  # (2,)*6 + (2,)
    w = np.moveaxis(w, -1, clf.label_site_ + 1).reshape(-1)  # label after its site, as in to_mps
    w = w / np.linalg.norm(w)
    dims = [2] * 6
    dims[clf.label_site_] *= 2
    for b in range(5):
        s = np.linalg.svd(w.reshape(int(np.prod(dims[: b + 1])), -1), compute_uv=False)
        p = s**2 / np.sum(s**2)
        p = p[p > 1e-15]
        assert abs(clf.entanglement_entropy()[b] + np.sum(p * np.log(p))) < 1e-8


def test_feature_importance_and_warm_start(digits_small):
    Xtr, _, ytr, _ = digits_small
    clf = MPSClassifier(solver="sweep", max_bond=6, n_sweeps=1, random_state=0, warm_start=True).fit(Xtr[:300], ytr[:300])
    imp = clf.feature_importance(Xtr[:100], ytr[:100])
    assert imp.shape == (64,) and np.all(imp >= 0)
    # corner pixels of the digits are always blank: blanking them changes nothing
    assert imp[0] < 1e-12 and imp.max() > 1e-3
    before = clf.history_[-1]["loss"]
    clf.fit(Xtr[:300], ytr[:300])
    assert len(clf.history_) == 2 and clf.history_[-1]["loss"] <= before * 1.05
    clf.partial_fit(Xtr[:300], ytr[:300])
    assert len(clf.history_) == 3


def test_save_load_round_trip(tmp_path, digits_small):
    Xtr, Xte, ytr, _ = digits_small
    clf = MPSClassifier(solver="sweep", max_bond=6, n_sweeps=1, loss="cross-entropy", random_state=0).fit(Xtr[:200], ytr[:200])
    path = clf.save(tmp_path / "model")
    back = MPSClassifier.load(path)
    np.testing.assert_array_equal(back.predict(Xte), clf.predict(Xte))
    np.testing.assert_array_equal(back.predict_proba(Xte), clf.predict_proba(Xte))
    assert back.get_params() == clf.get_params() and back.label_site_ == clf.label_site_
    with pytest.raises(SchemaError, match="MPSClassifier"):
        __import__("tnkit").MPS.random(3, 2, seed=0).save(tmp_path / "mps")
        MPSClassifier.load(tmp_path / "mps.npz")


def test_string_labels_binary_and_pipeline():
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    r = np.random.default_rng(0)
    X = r.standard_normal((80, 4))
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    pipe = make_pipeline(MinMaxScaler(clip=True), MPSClassifier(solver="sweep", max_bond=4, n_sweeps=2, random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.mean() > 0.7
    clf = pipe.fit(X, y)[-1]
    assert clf.decision_function(MinMaxScaler().fit(X).transform(X)).shape == (80,)
    assert set(clf.classes_) == {"no", "yes"}


def test_bad_parameters_are_named():
    X, y = np.random.default_rng(0).random((10, 3)), np.arange(10) % 2
    with pytest.raises(OptionError, match="solver"):
        MPSClassifier(solver="lbfgs").fit(X, y)
    with pytest.raises(OptionError, match="loss"):
        MPSClassifier(loss="hinge").fit(X, y)
    with pytest.raises(OptionError, match="local_solver"):
        MPSClassifier(local_solver="newton").fit(X, y)
    with pytest.raises(OptionError, match="learning_rate_schedule"):
        MPSClassifier(solver="adam", learning_rate_schedule="linear").fit(X, y)
    with pytest.raises(ValueError, match="temperature"):
        MPSClassifier(temperature=0).fit(X, y)
    with pytest.raises(ValueError, match="max_bond"):
        MPSClassifier(max_bond=0).fit(X, y)
    with pytest.raises(ValueError, match="n_sweeps"):
        MPSClassifier(solver="sweep", n_sweeps=0).fit(X, y)
    with pytest.raises(ValueError, match="cutoff"):
        MPSClassifier(cutoff=2.0).fit(X, y)
    clf = MPSClassifier(solver="sweep", n_sweeps=1).fit(X, y)
    with pytest.raises(ValueError, match="not in `classes_`"):
        clf.partial_fit(X, y + 5)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :2])


def estimator_check_failures(estimator):
    """scikit-learn's ``check_estimator`` failures that are not explained by the [0, 1] feature range.

    check_classifiers_train asks for 83% accuracy on unscaled Gaussian blobs, outside the
    [0, 1] domain of the cos-sin map (which is periodic there); the scaled case is covered
    by the pipeline tests. check_decision_proba_consistency fits on negative blobs although
    the positive_only tag is set (check_fit_non_negative asks for the ValueError that fit
    then raises). The checks feed features above 1; the warning about it is tested separately.
    """
    from sklearn.utils.estimator_checks import check_estimator

    from tnkit.ml.feature_maps import FeatureRangeWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FeatureRangeWarning)
        failures = check_estimator(estimator, on_fail=None, on_skip=None)
    assert len(failures) > 30
    allowed = {"check_classifiers_train", "check_decision_proba_consistency"}
    return [(f["check_name"], str(f["exception"])[:200]) for f in failures
            if f["status"] == "failed" and f["check_name"] not in allowed]


def test_sklearn_estimator_checks():
    assert not estimator_check_failures(MPSClassifier(solver="sweep", max_bond=4, n_sweeps=2, local_steps=4, random_state=0))


@pytest.mark.parametrize("feature_map", ["cos-sin", "linear"])
def test_initial_chain_passes_inputs_through_at_equal_scale(feature_map):
    """Near-identity start: with the linear map every sample gets the same output (no noise)."""
    from tnkit.ml.feature_maps import passthrough_vector

    r = np.random.default_rng(1)
    phi = embed(r.random((50, 9)), feature_map)
    w = passthrough_vector(phi)
    tensors = init_tensors(9, 2, 3, 4, r, noise=0.0, passthrough=w, label_site=4)
    assert tensors[4].shape[-1] == 3
    f = raw_chain_outputs(tensors, 4, phi)
    np.testing.assert_allclose(f, _dense_outputs(tensors, 4, phi), rtol=1e-10, atol=1e-14)
    expected = np.prod(phi @ w, axis=1)  # each site multiplies the signal by w . phi(x_i)
    assert_close_rtol(np.abs(f[:, 0]), np.abs(expected))
    spread = np.ptp(np.log(np.abs(f[:, 0])))
    assert (spread < 1e-10) if feature_map == "linear" else (spread > 0.1)


@pytest.mark.parametrize("solver", ["sweep", "adam"])
def test_long_chain_learns_a_rule_on_few_pixels(solver):
    """128 sites, mostly blank inputs, class = two pixels: must be learned (MNIST 14x14 regression).

    Before the loss moved to output directions, the label tensor had to be ~1e20 times
    its inputs, the L2 term swamped the data and sweeps stalled near chance on such chains.
    """
    r = np.random.default_rng(0)
    X = r.random((1300, 128)) * (r.random((1300, 128)) < 0.4)
    y = 2 * (X[:, 40] > 0.3) + (X[:, 100] > 0.3)  # 4 classes, chance 0.25
    kwargs = dict(n_sweeps=1, alpha=0.03) if solver == "sweep" else dict(
        n_epochs=3, learning_rate=0.003, learning_rate_schedule="constant", batch_size=32)
    clf = MPSClassifier(max_bond=4, solver=solver, random_state=0, **kwargs).fit(X[:1000], y[:1000])
    assert clf.score(X[1000:], y[1000:]) > 0.85


def test_scheduled_learning_rate_warms_up_then_decays():
    assert [scheduled_learning_rate("constant", 0.1, s, 7) for s in range(7)] == [0.1] * 7
    rates = np.array([scheduled_learning_rate("cosine", 0.1, s, 100, warmup=0.1) for s in range(100)])
    np.testing.assert_allclose(rates[:10], 0.01 * np.arange(1, 11))  # linear warm-up to the peak
    np.testing.assert_allclose(rates[10:], 0.05 * (1 + np.cos(np.pi * np.arange(90) / 90)))
    assert rates[-1] > 0
    with pytest.raises(OptionError, match="learning_rate_schedule"):
        scheduled_learning_rate("step", 0.1, 0, 10)
    with pytest.raises(ValueError, match="step"):
        scheduled_learning_rate("cosine", 0.1, 10, 10)


def test_adam_follows_the_learning_rate_schedule(digits_small):
    Xtr, _, ytr, _ = digits_small
    fits = {
        schedule: MPSClassifier(max_bond=4, solver="adam", n_epochs=3, batch_size=100, learning_rate=0.01,
                                learning_rate_schedule=schedule, random_state=0).fit(Xtr[:300], ytr[:300])
        for schedule in ("constant", "cosine")
    }
    assert [h["learning_rate"] for h in fits["constant"].history_] == [0.01] * 3
    last = [h["learning_rate"] for h in fits["cosine"].history_]  # rate of each epoch's last step
    assert last[0] > last[1] > last[2] and last[2] < 0.1 * 0.01
    diff = max(np.abs(a - b).max() for a, b in zip(fits["constant"].tensors_, fits["cosine"].tensors_))
    assert diff > 1e-3


def test_defaults_are_the_published_recipe():
    """The documented MNIST recipe is what MPSClassifier() does, with epochs chosen from the data size."""
    from tnkit.ml.mps_classifier import ADAM_ALPHA, ADAM_LEARNING_RATE, SWEEP_ALPHA, default_n_epochs

    params = MPSClassifier().get_params()
    recipe = dict(max_bond=10, solver="adam", loss="squared", learning_rate_schedule="cosine", batch_size=64,
                  alpha=None, feature_map="cos-sin", n_epochs=None)
    assert {k: params[k] for k in recipe} == recipe
    assert params["learning_rate"] is None and ADAM_LEARNING_RATE == 0.002
    assert (ADAM_ALPHA, SWEEP_ALPHA) == (0.0, 0.003)
    assert default_n_epochs(60000, 64) == 12  # 11,256 steps: the MNIST figure
    assert default_n_epochs(10000, 64) == 71  # at least 11,000 steps on smaller sets
    assert default_n_epochs(50, 64) == 100  # capped
    assert default_n_epochs(200000, 64) == 4  # large sets: fewer epochs, about as many steps
    for n in (5000, 10000, 30000, 60000, 200000):
        steps = -(-n // 64)
        assert 11000 <= min(100, default_n_epochs(n, 64)) * steps < 11000 + steps or default_n_epochs(n, 64) == 100


def test_alpha_none_resolves_by_solver(digits_small):
    Xtr, _, ytr, _ = digits_small
    adam = MPSClassifier(max_bond=3, n_epochs=1, random_state=0).fit(Xtr[:100], ytr[:100])
    sweep = MPSClassifier(max_bond=3, solver="sweep", n_sweeps=1, random_state=0).fit(Xtr[:100], ytr[:100])
    given = MPSClassifier(max_bond=3, n_epochs=1, alpha=0.01, random_state=0).fit(Xtr[:100], ytr[:100])
    assert (adam.alpha_, sweep.alpha_, given.alpha_) == (0.0, 0.003, 0.01)


def test_fit_records_the_epochs_it_chose(digits_small):
    Xtr, _, ytr, _ = digits_small
    clf = MPSClassifier(max_bond=3, batch_size=200, random_state=0).fit(Xtr[:200], ytr[:200])
    assert clf.n_epochs_ == 100 and len(clf.history_) == 100
    assert clf.history_[-1]["learning_rate"] < 1e-3 * clf.history_[0]["learning_rate"] + 1e-6  # cosine decayed


def test_local_dim_one_is_refused_before_training():
    X, y = np.random.default_rng(0).random((10, 3)), np.arange(10) % 2
    with pytest.raises(ValueError, match="local_dim.*constant"):
        MPSClassifier(local_dim=1).fit(X, y)


def test_feature_range_is_declared_and_enforced():
    from tnkit.ml.feature_maps import FeatureRangeWarning

    r = np.random.default_rng(0)
    X, y = r.random((40, 4)), np.arange(40) % 2
    clf = MPSClassifier(solver="sweep", n_sweeps=1, random_state=0)
    assert clf.feature_range == (0.0, 1.0)
    assert clf.__sklearn_tags__().input_tags.positive_only
    assert MPSClassifier(feature_map="polynomial").feature_range is None
    with pytest.raises(ValueError, match="Negative values.*cos-sin"):
        clf.fit(X - 0.5, y)
    with pytest.warns(FeatureRangeWarning, match=r"outside \[0, 1\].*max 1.99"):
        clf.fit(2 * X, y)
    clf.fit(X, y)
    with pytest.warns(FeatureRangeWarning, match="min -0.49"):
        clf.predict(X - 0.5)
    with pytest.raises(ValueError, match="MPSClassifier expects `X`.*NaN"):
        clf.predict(np.full((2, 4), np.nan))


def test_adam_matches_the_textbook_update_on_several_arrays():
    from tnkit.ml.optim import Adam

    r = np.random.default_rng(0)
    params = [r.standard_normal((2, 3)), r.standard_normal(4)]
    opt, ref = Adam(0.01), [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t in range(1, 4):
        grads = [r.standard_normal(p.shape) for p in params]
        params = opt.step(params, grads)
        for i, g in enumerate(grads):
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = 0.999 * v[i] + 0.001 * g * g
            ref[i] = ref[i] - 0.01 * (m[i] / (1 - 0.9**t)) / (np.sqrt(v[i] / (1 - 0.999**t)) + 1e-8)
    for p, q in zip(params, ref):
        np.testing.assert_allclose(p, q, rtol=1e-13, atol=1e-15)


def test_every_solver_name_has_its_training_function():
    from tnkit.ml import mps_classifier

    assert tuple(mps_classifier.SOLVER_FUNCTIONS) == mps_classifier.SOLVERS
