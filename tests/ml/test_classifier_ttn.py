"""TTNClassifier: dense references, exact gradients, canonical form, digits, scikit-learn conventions, save/load."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    assert_close_rtol,
    assert_gradients_match_finite_differences,
    classifier_loss,
    dense_feature_outputs,
)

from tnkit.errors import SchemaError
from tnkit.ml import TTNClassifier
from tnkit.ml.feature_maps import embed, passthrough_vector
from tnkit.ml.ttn_classifier import feature_tree, init_tree_tensors, tree_gradients, tree_outputs
from tnkit.ttn import TTN, Tree


def _random_tensors(rng, tree, d=2, k=3, bond=3):
    shapes = [TTN.random(tree, d, bond, output_dim=k, seed=0).tensor(v).shape for v in tree.internal_nodes]
    return [rng.standard_normal(s) for s in shapes]


def _dense_outputs(tree, tensors, phi):
    """``f[b, k] = sum_s W[s_0..s_{L-1}, k] prod_i phi[b, i, s_i]`` from the dense weight array."""
    return dense_feature_outputs(TTN(tree, tensors).to_dense(), phi)  # weights (d,)*L + (K,)


def _dense_weights_by_hand(tensors):
    """The weights of ``Tree.grid(2, 2)`` written out with one plain ``np.einsum``."""
    t4, t5, t6 = tensors  # nested ((0, 1), (2, 3)): T4 (d, d, D), T5 (d, d, D), root (D, D, K)
    return np.einsum("abx,cdy,xyk->abcdk", t4, t5, t6)


@pytest.fixture
def digits_split():
    from sklearn.model_selection import train_test_split

    from tnkit.datasets import load_digits

    X, y = load_digits()
    return train_test_split(X, y, test_size=0.25, random_state=0)


def test_forward_pass_matches_dense_reference(rng):
    tree = Tree.grid(2, 2)
    assert tree.to_nested() == ((0, 1), (2, 3))
    tensors = _random_tensors(rng, tree)
    phi = embed(rng.random((6, 4)))
    w = _dense_weights_by_hand(tensors)
    expected = np.einsum("abcdk,za,zb,zc,zd->zk", w, phi[:, 0], phi[:, 1], phi[:, 2], phi[:, 3])
    assert_close_rtol(tree_outputs(tree, tensors, phi), expected)
    for rows, cols in [(2, 3), (3, 3), (1, 5)]:
        tree = Tree.grid(rows, cols)
        tensors = _random_tensors(rng, tree, k=4)
        phi = embed(rng.random((5, rows * cols)), "polynomial", local_dim=2)
        assert_close_rtol(tree_outputs(tree, tensors, phi), _dense_outputs(tree, tensors, phi))
        assert_close_rtol(tree_outputs(tree, tensors, phi), TTN(tree, tensors).contract_product_inputs(phi))


def test_forward_pass_is_safe_on_large_trees(rng):
    """100 leaves of small numbers: the per-sample log scales keep the output finite and exact."""
    tree = Tree.grid(10, 10)
    tensors = [0.3 * t for t in _random_tensors(rng, tree, bond=2)]
    phi = embed(rng.random((3, 100)))
    f = tree_outputs(tree, tensors, phi)
    ttn = TTN(tree, tensors)
    direct = ttn.contract_product_inputs(phi)  # may underflow: compare where it does not
    assert np.all(np.isfinite(f))
    mask = np.abs(direct) > 1e-250
    assert mask.any()
    assert_close_rtol(f[mask], direct[mask], 1e-8)


@pytest.mark.parametrize("loss", ["squared", "cross-entropy"])
@pytest.mark.parametrize("shape", [(2, 2), (2, 3), (3, 3)])
def test_gradients_match_finite_differences(rng, loss, shape):
    tree = Tree.grid(*shape)
    tensors = _random_tensors(rng, tree)
    phi = embed(rng.random((5, tree.n_leaves)))
    Y = np.eye(3)[rng.integers(0, 3, 5)]
    value, grads, f = tree_gradients(tree, tensors, phi, Y, loss=loss, alpha=0.1)
    assert_close_rtol(f, _dense_outputs(tree, tensors, phi))
    assert_gradients_match_finite_differences(
        lambda ts: tree_gradients(tree, ts, phi, Y, loss=loss, alpha=0.1)[0], tensors, grads,
        checks_per_tensor=5,
    )
    reg = 0.05 * sum(np.sum(t * t) for t in tensors)
    u = f / np.linalg.norm(f, axis=1, keepdims=True)  # the loss sees output directions
    assert_close_rtol(value, classifier_loss(u, Y, loss) + reg)


def test_initial_tensors_are_canonical_and_pass_inputs_through(rng):
    tree = Tree.grid(3, 4)
    phi = embed(rng.random((20, 12)), "linear")
    tensors = init_tree_tensors(tree, 2, 3, 4, rng, noise=0.0)
    assert TTN(tree, tensors).canonicalize(tree.root).bond_dims == TTN(tree, tensors).bond_dims
    clf_ttn = TTN(tree, tensors)
    clf_ttn.adopt_gauge([-1 if v < 12 or v == tree.root else tree.parent(v) for v in range(tree.n_nodes)])
    assert clf_ttn.is_canonical(tree.root)
    f = tree_outputs(tree, tensors, phi)
    # the linear map's components sum to one: every sample gets exactly the same output
    np.testing.assert_allclose(f, np.broadcast_to(f[0], f.shape), rtol=1e-10)
    w = passthrough_vector(phi)
    assert_close_rtol(w, np.full(2, 2**-0.5))
    tensors = init_tree_tensors(tree, 2, 3, 4, rng, noise=0.0, passthrough=w)
    assert_close_rtol(tree_outputs(tree, tensors, phi), f)


def test_fit_on_digits_learns_and_keeps_canonical_form(digits_split):
    Xtr, Xte, ytr, yte = digits_split
    clf = TTNClassifier(max_bond=6, n_epochs=3, random_state=0).fit(Xtr, ytr)
    assert clf.tree_ == Tree.grid(8, 8)
    assert clf.score(Xte, yte) > 0.85  # chance is 0.1; 3 epochs at bond 6 reach 0.89
    assert len(clf.history_) == 3 and clf.history_[-1]["loss"] < clf.history_[0]["loss"]
    ttn = clf.to_ttn()
    assert ttn.is_canonical(clf.tree_.root) and ttn.output_dim == 10
    assert max(clf.bond_dims_) == 6
    entropy = clf.entanglement_entropy()
    assert entropy.shape == (len(clf.tree_.bonds),)
    assert np.all(entropy >= -1e-12) and entropy.max() <= np.log(6) + 1e-9
    proba = clf.predict_proba(Xte[:20])
    assert_close_rtol(proba.sum(axis=1), np.ones(20))
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(Xte[:20]))


def test_entanglement_entropy_matches_dense_svd(rng):
    X = rng.random((40, 4))
    y = (X[:, 0] > X[:, 3]).astype(int)
    clf = TTNClassifier(max_bond=3, n_epochs=1, batch_size=8, random_state=0).fit(X, y)
    assert clf.tree_ == Tree.grid(2, 2)
    w = TTN(clf.tree_, clf.tensors_).to_dense()  # (2, 2, 2, 2, K): leaves 0 1 under node 4
    w = w / np.linalg.norm(w)
    s = np.linalg.svd(w.reshape(4, -1), compute_uv=False)
    p = s**2 / np.sum(s**2)
    p = p[p > 1e-15]
    bond_of_4 = list(clf.tree_.bonds).index(4)
    assert abs(clf.entanglement_entropy()[bond_of_4] + np.sum(p * np.log(p))) < 1e-8


def test_warm_start_partial_fit_and_save_load(tmp_path, digits_split):
    Xtr, Xte, ytr, _ = digits_split
    clf = TTNClassifier(max_bond=4, n_epochs=1, random_state=0, warm_start=True).fit(Xtr[:300], ytr[:300])
    first = [t.copy() for t in clf.tensors_]
    clf.fit(Xtr[:300], ytr[:300])
    assert len(clf.history_) == 2 and any(not np.allclose(a, b) for a, b in zip(first, clf.tensors_))
    clf.partial_fit(Xtr[:300], ytr[:300])
    assert len(clf.history_) == 3
    path = clf.save(tmp_path / "ttn")
    back = TTNClassifier.load(path)
    assert back.tree_ == clf.tree_ and back.get_params() == clf.get_params()
    np.testing.assert_array_equal(back.predict(Xte), clf.predict(Xte))
    np.testing.assert_array_equal(back.predict_proba(Xte), clf.predict_proba(Xte))
    assert back.history_ == clf.history_
    from tnkit.ml import MPSClassifier

    with pytest.raises(SchemaError, match="TTNClassifier"):
        MPSClassifier(solver="sweep", max_bond=2, n_sweeps=1).fit(Xtr[:50], ytr[:50]).save(tmp_path / "mps")
        TTNClassifier.load(tmp_path / "mps.npz")


def test_image_shape_and_non_image_inputs():
    assert feature_tree(64) == Tree.grid(8, 8)
    assert feature_tree(6) == Tree.balanced(6)
    assert feature_tree(6, (2, 3)) == Tree.grid(2, 3)
    with pytest.raises(ValueError, match="image_shape"):
        feature_tree(6, (2, 2))
    with pytest.raises(ValueError, match="image_shape"):
        TTNClassifier(image_shape=(3, 3)).fit(np.zeros((4, 8)), [0, 1, 0, 1])


def test_pipeline_cross_val_and_string_labels():
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    r = np.random.default_rng(0)
    X = r.standard_normal((90, 5))
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    pipe = make_pipeline(MinMaxScaler(clip=True), TTNClassifier(max_bond=4, n_epochs=15, batch_size=16, random_state=0))
    assert cross_val_score(pipe, X, y, cv=3).mean() > 0.7
    clf = pipe.fit(X, y)[-1]
    assert clf.decision_function(MinMaxScaler().fit(X).transform(X)).shape == (90,)
    assert set(clf.classes_) == {"no", "yes"}


def test_bad_parameters_are_named():
    X, y = np.random.default_rng(0).random((10, 4)), np.arange(10) % 2
    for kwargs, name in [(dict(max_bond=0), "max_bond"), (dict(n_epochs=0), "n_epochs"),
                         (dict(batch_size=0), "batch_size"), (dict(learning_rate=0.0), "learning_rate"),
                         (dict(alpha=-1.0), "alpha"), (dict(loss="hinge"), "loss"),
                         (dict(feature_map="fourier"), "feature_map")]:
        with pytest.raises(ValueError, match=name):
            TTNClassifier(**kwargs).fit(X, y)
    clf = TTNClassifier(n_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :2])


def test_sklearn_estimator_checks():
    from test_classifier_mps import estimator_check_failures

    assert not estimator_check_failures(TTNClassifier(max_bond=3, n_epochs=2, random_state=0))


def test_save_load_keeps_the_child_order_of_large_grids(tmp_path, rng):
    # Regression: the tree used to be saved as a parent array, which does not keep each
    # node's child order; on a 14x14 grid the reloaded tree differed and weights with
    # equal bond and pixel dimensions would load into the wrong axes silently.
    x = rng.random((24, 196))
    y = np.arange(24) % 2
    clf = TTNClassifier(max_bond=2, n_epochs=1, random_state=0).fit(x, y)
    assert Tree.from_parents(clf.tree_.parents).to_nested() != clf.tree_.to_nested()  # the trap is real
    path = clf.save(tmp_path / "ttn_clf")
    back = TTNClassifier.load(path)
    assert back.tree_.to_nested() == clf.tree_.to_nested()
    np.testing.assert_array_equal(back.decision_function(x), clf.decision_function(x))
