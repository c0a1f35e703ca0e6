"""The long MNIST recipe's pieces: augmented training sets and soft-voting ensembles of the classifiers."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import VotingClassifier

from tnkit.datasets import augment_images, load_digits, pool_images
from tnkit.ml import MPSClassifier, TTNClassifier


def _members():
    return [("mps", MPSClassifier(max_bond=4, n_epochs=2, random_state=0)),
            ("ttn", TTNClassifier(max_bond=4, n_epochs=2, random_state=1))]


def test_soft_vote_is_the_mean_of_separately_fitted_members():
    """The documented ensemble: fitting members in separate processes and averaging equals VotingClassifier."""
    X, y = load_digits()
    Xtr, ytr, Xte = X[:300], y[:300], X[300:400]
    vote = VotingClassifier(_members(), voting="soft").fit(Xtr, ytr)
    separate = [est.fit(Xtr, ytr) for _, est in _members()]
    mean = np.mean([est.predict_proba(Xte) for est in separate], axis=0)
    np.testing.assert_allclose(vote.predict_proba(Xte), mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(vote.predict(Xte), separate[0].classes_[mean.argmax(axis=1)])


def test_augmented_then_pooled_images_train_a_classifier():
    """augment_images, then pool_images (factor 1 here: 8x8 digits are small): the long recipe's pipeline."""
    data, target = load_digits(flatten=False)
    X, y = augment_images(data[:300], target[:300], n_copies=2, max_shift=0.5, max_rotation=5.0, seed=0)
    assert X.shape == (900, 8, 8) and X.min() >= 0 and X.max() <= 1
    X = pool_images(X, 1).reshape(len(X), -1)
    clf = MPSClassifier(max_bond=6, n_epochs=15, random_state=0).fit(X, y)
    assert clf.score(data[1000:1300].reshape(300, -1), target[1000:1300]) > 0.88
