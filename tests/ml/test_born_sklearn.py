"""The Born machines pass scikit-learn's estimator checks.

They declare through ``__sklearn_tags__`` that their input is categorical (non-negative
integer codes), so the checks feed integer data; every check then runs.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from tnkit.ml import MPSBornMachine
from tnkit.ml.ttn_born_machine import TTNBornMachine


@parametrize_with_checks([MPSBornMachine(max_bond=2, n_sweeps=2), TTNBornMachine(max_bond=2, n_sweeps=2)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.parametrize("cls", [MPSBornMachine, TTNBornMachine])
def test_tags_declare_categorical_codes(cls):
    tags = cls().__sklearn_tags__()
    assert tags.input_tags.categorical and tags.input_tags.positive_only and not tags.input_tags.allow_nan


@pytest.mark.parametrize("cls", [MPSBornMachine, TTNBornMachine])
def test_validation_messages(cls):
    X = np.array([[0, 1, 1], [1, 0, 1]])
    with pytest.raises(ValueError, match="NaN"):
        cls(n_sweeps=1).fit(np.array([[0, np.nan, 1], [1, 0, 1]]))
    with pytest.raises(ValueError, match="Negative values"):
        cls(n_sweeps=1).fit(-X)
    with pytest.raises(ValueError, match="1 feature"):
        cls(n_sweeps=1).fit(X[:, :1])
    model = cls(max_bond=2, n_sweeps=1, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 2 features, but"):
        model.log_prob(X[:, :2])
    with pytest.raises(ValueError, match="not a value of feature"):
        model.log_prob(X + 1)
