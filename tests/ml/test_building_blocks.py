"""The shared pieces of the classifiers: losses, schedules, the minibatch Adam loop, parameter rules."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from tnkit.errors import OptionError
from tnkit.ml import losses, optim, trainers, validation
from tnkit.ml.base import TensorNetworkClassifierBase
from tnkit.ml.trainers import AdamSettings, balance_norms, minibatch_adam, training_accuracy
from tnkit.ml.validation import boolean, bond, check_params, fraction, instance, integer, number, option


@pytest.mark.parametrize("module", [losses, optim, trainers, validation])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.failed == 0


def test_moved_loss_names_warn_and_resolve():
    with pytest.warns(DeprecationWarning, match="tnkit.ml.losses.normalized_loss"):
        moved = optim.normalized_loss
    assert moved is losses.normalized_loss
    with pytest.raises(AttributeError, match="no attribute"):
        optim.not_a_name  # noqa: B018


def test_schedules_registry_matches_closed_forms():
    n = 100
    lrs = [optim.scheduled_learning_rate("cosine", 0.5, s, n) for s in range(n)]
    n_warm = 3  # ceil(0.03 * 100)
    assert lrs[:n_warm] == pytest.approx([0.5 * (k + 1) / n_warm for k in range(n_warm)])
    assert lrs[n_warm] == pytest.approx(0.5)
    assert lrs[-1] == pytest.approx(0.25 * (1 + np.cos(np.pi * (n - 1 - n_warm) / (n - n_warm))))
    assert all(a >= b for a, b in zip(lrs[n_warm:], lrs[n_warm + 1 :]))
    assert {optim.scheduled_learning_rate("constant", 0.5, s, n) for s in range(n)} == {0.5}
    with pytest.raises(OptionError, match="cosine"):
        optim.scheduled_learning_rate("linear", 0.5, 0, n)


def test_balance_norms_keeps_the_product():
    rng = np.random.default_rng(0)
    mats = [rng.standard_normal((3, 3)) * scale for scale in (1e-3, 1.0, 50.0)]
    balanced = balance_norms(mats)
    norms = [np.linalg.norm(m) for m in balanced]
    np.testing.assert_allclose(norms, norms[0], rtol=1e-12)
    np.testing.assert_allclose(balanced[0] @ balanced[1] @ balanced[2], mats[0] @ mats[1] @ mats[2], rtol=1e-10)
    with_zero = [np.zeros((2, 2)), np.eye(2)]
    assert all(a is b for a, b in zip(balance_norms(with_zero), with_zero))


def _least_squares_problem(seed=0, n=96, p=5):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, p))
    x_true = rng.standard_normal(p)
    return A, A @ x_true, x_true


def test_minibatch_adam_solves_least_squares_and_records_each_epoch():
    A, b, x_true = _least_squares_problem()

    def batch_loss(params, idx):
        r = A[idx] @ params[0] - b[idx]
        return 0.5 * float(np.mean(r * r)), [A[idx].T @ r / len(idx)]

    def evaluate(params):
        return {"error": float(np.linalg.norm(params[0] - x_true))}

    settings = AdamSettings(n_epochs=60, batch_size=16, learning_rate=0.1, schedule="cosine")
    (x,), history = minibatch_adam([np.zeros(5)], batch_loss, len(b), settings,
                                   rng=np.random.default_rng(1), evaluate=evaluate)
    assert len(history) == 60
    assert set(history[0]) == {"loss", "error", "seconds", "learning_rate"}
    assert history[-1]["error"] < 1e-3 < history[0]["error"]
    assert history[-1]["loss"] < 1e-6
    assert history[-1]["learning_rate"] < 1e-3  # the cosine schedule ends near 0


def test_minibatch_adam_restart_and_end_epoch_hooks():
    """``restart_each_epoch`` balances the norms at every epoch start; ``end_epoch`` runs after every epoch."""
    seen_norms, calls = [], []

    def batch_loss(params, idx):
        seen_norms.append([float(np.linalg.norm(p)) for p in params])
        return 0.0, [np.zeros_like(p) for p in params]

    def end_epoch(params):
        calls.append(len(calls))
        return [params[0] * 4.0, params[1] / 4.0]  # unbalances them again

    start = [np.full(4, 1.0), np.full(4, 9.0)]
    for restart, first_batch_equal in ((True, [True, True]), (False, [True, False])):
        seen_norms.clear(), calls.clear()
        settings = AdamSettings(n_epochs=2, batch_size=8, learning_rate=0.1, restart_each_epoch=restart)
        minibatch_adam(start, batch_loss, 8, settings, rng=np.random.default_rng(0),
                       evaluate=lambda p: {}, end_epoch=end_epoch)
        assert calls == [0, 1]
        assert [np.isclose(*norms) for norms in seen_norms] == first_batch_equal


def test_minibatch_adam_is_deterministic_given_the_rng():
    A, b, _ = _least_squares_problem(seed=2)

    def batch_loss(params, idx):
        r = A[idx] @ params[0] - b[idx]
        return 0.5 * float(np.mean(r * r)), [A[idx].T @ r / len(idx)]

    settings = AdamSettings(n_epochs=3, batch_size=10, learning_rate=0.05)
    runs = [minibatch_adam([np.zeros(5)], batch_loss, len(b), settings, rng=np.random.default_rng(7),
                           evaluate=lambda p: {})[0][0] for _ in range(2)]
    np.testing.assert_array_equal(*runs)


@pytest.mark.parametrize("kwargs, name, error", [
    (dict(n_epochs=0, batch_size=1, learning_rate=0.1), "n_epochs", ValueError),
    (dict(n_epochs=1, batch_size=1.5, learning_rate=0.1), "batch_size", TypeError),
    (dict(n_epochs=1, batch_size=1, learning_rate=0.0), "learning_rate", ValueError),
    (dict(n_epochs=1, batch_size=1, learning_rate=0.1, schedule="step"), "learning_rate_schedule", OptionError),
])
def test_adam_settings_refuse_bad_values(kwargs, name, error):
    with pytest.raises(error, match=name):
        AdamSettings(**kwargs)


def test_training_accuracy():
    f = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert training_accuracy(f, np.eye(2)[[0, 1, 1]]) == pytest.approx(2 / 3)


class _Params:
    n_epochs, alpha, solver, max_bond, cutoff, learning_rate = 3, 0.0, "adam", None, 1e-10, None
    decay, verbose, tree = 1.0, False, None


@pytest.mark.parametrize("attr, value, rule, error, match", [
    ("n_epochs", 0, integer(minimum=1), ValueError, "`n_epochs` must be an integer >= 1, got 0"),
    ("n_epochs", True, integer(minimum=1), TypeError, "`n_epochs` must be an integer"),
    ("alpha", -0.1, number(positive=False), ValueError, "`alpha` must be a finite number >= 0"),
    ("alpha", float("nan"), number(positive=False), ValueError, "`alpha`"),
    ("alpha", "0.1", number(positive=False), TypeError, "`alpha` must be a real number"),
    ("solver", "lbfgs", option(("adam", "sweep")), OptionError, "solver"),
    ("max_bond", 0, bond(), ValueError, "max_bond"),
    ("cutoff", 1.0, fraction(), ValueError, "cutoff"),
    ("learning_rate", 0.0, number(optional=True), ValueError, "learning_rate"),
    ("decay", 1.5, number(maximum=1.0), ValueError, "`decay` must be at most 1.0, got 1.5"),
    ("verbose", "yes", boolean(), TypeError, "`verbose` must be True or False"),
    ("tree", 3, instance(tuple, optional=True), TypeError, "`tree` must be a builtins.tuple or None, got int"),
])
def test_rules_name_the_parameter(attr, value, rule, error, match):
    params = _Params()
    check_params(params, {attr: rule})  # the defaults pass
    setattr(params, attr, value)
    with pytest.raises(error, match=match):
        check_params(params, {attr: rule})


def test_optional_rules_accept_none():
    params = _Params()
    params.n_epochs = None
    check_params(params, {"n_epochs": integer(optional=True), "learning_rate": number(optional=True),
                          "max_bond": bond()})
    with pytest.raises(TypeError, match="n_epochs"):
        check_params(params, {"n_epochs": integer()})


#: The hooks of TensorNetworkClassifierBase with the parameters its docstring gives them.
HOOKS = {
    "_parameter_rules": ["self"],
    "_init_model": ["self", "phi", "Y", "rng"],
    "_train": ["self", "phi", "Y", "n_iter", "rng"],
    "_decision": ["self", "phi"],
    "_logit_scale": ["self"],
    "_model_arrays": ["self"],
    "_restore_model": ["self", "tensors", "meta"],
}


@pytest.mark.parametrize("cls_name", ["MPSClassifier", "TTNClassifier"])
def test_classifier_hooks_match_the_base_docstring(cls_name):
    import inspect

    import tnkit.ml

    cls = getattr(tnkit.ml, cls_name)
    for name, params in HOOKS.items():
        assert f"``{name}({', '.join(params)})" in TensorNetworkClassifierBase.__doc__
        assert list(inspect.signature(getattr(cls, name)).parameters) == params


def test_adam_flat_step_matches_the_list_step_but_for_eps():
    """``step_flat_`` (in place, one array) moves as ``step`` does when ``eps`` plays no part."""
    rng = np.random.default_rng(0)
    theta, grads = rng.standard_normal(7), [rng.standard_normal(7) for _ in range(5)]
    flat, listed = optim.Adam(0.1, eps=0.0), optim.Adam(0.1, eps=0.0)
    moved, params = theta.copy(), [theta.copy()]
    for g in grads:
        flat.step_flat_(moved, g)
        params = listed.step(params, [g])
    np.testing.assert_allclose(moved, params[0], rtol=1e-13)
    assert not np.allclose(moved, theta)
