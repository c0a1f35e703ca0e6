"""tnkit.core.validate argument checks and tnkit.core.rng seeds."""

from __future__ import annotations

import numpy as np
import pytest

from tnkit.core.rng import as_generator
from tnkit.core.validate import (
    check_number,
    as_array,
    check_cutoff,
    check_finite,
    check_int,
    check_max_bond,
    check_option,
    check_site,
)
from tnkit.errors import OptionError, TnkitError


def test_check_option():
    check_option("method", "svd", ("svd", "fit"))
    with pytest.raises(OptionError, match=r"`method` must be one of \['fit', 'svd'\], got 'zip'") as exc:
        check_option("method", "zip", ("svd", "fit"))
    assert isinstance(exc.value, KeyError)
    assert isinstance(exc.value, ValueError)
    assert isinstance(exc.value, TnkitError)
    # KeyError normally quotes its message; OptionError does not
    assert str(exc.value).startswith("`method`")


@pytest.mark.parametrize("value", [0, 5, np.int64(3), np.int8(2)])
def test_check_int_accepts_integers(value):
    out = check_int("n", value, minimum=0)
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value", [True, 2.0, "3", None, np.float64(1.0)])
def test_check_int_rejects_non_integers(value):
    with pytest.raises(TypeError, match="`n` must be an integer"):
        check_int("n", value)


def test_check_int_minimum():
    with pytest.raises(ValueError, match="`n` must be an integer >= 1, got 0"):
        check_int("n", 0, minimum=1)


def test_check_max_bond():
    assert check_max_bond(None) is None
    assert check_max_bond(4) == 4
    with pytest.raises(ValueError, match="`max_bond` must be an integer >= 1"):
        check_max_bond(0)
    with pytest.raises(TypeError, match="`max_bond` must be an integer"):
        check_max_bond(2.0)


@pytest.mark.parametrize("value", [0, 0.0, 1e-10, 0.5, np.float64(0.25)])
def test_check_cutoff_accepts(value):
    out = check_cutoff(value)
    assert out == float(value) and type(out) is float


@pytest.mark.parametrize("value", [-1e-3, 1.0, 2.0, float("nan")])
def test_check_cutoff_range(value):
    with pytest.raises(ValueError, match=r"`cutoff` must lie in \[0, 1\)"):
        check_cutoff(value)


@pytest.mark.parametrize("value", [True, "1e-3", None, 1j])
def test_check_cutoff_type(value):
    with pytest.raises(TypeError, match="`cutoff` must be a real number"):
        check_cutoff(value)


def test_check_finite():
    check_finite("x", np.ones(3))
    with pytest.raises(ValueError, match="`x` must hold finite numbers, found NaN"):
        check_finite("x", np.array([1.0, np.nan, np.inf]))
    with pytest.raises(ValueError, match="found infinity"):
        check_finite("x", np.array([1.0, -np.inf]))
    with pytest.raises(ValueError, match="found NaN"):
        check_finite("x", np.array([1.0, complex(0, np.nan)]))


def test_check_site():
    assert check_site("i", 2, 5) == 2
    assert check_site("i", -1, 5) == 4
    assert check_site("i", -5, 5) == 0
    with pytest.raises(IndexError, match=r"`i` must be a site in \[0, 5\), got 5"):
        check_site("i", 5, 5)
    with pytest.raises(IndexError, match=r"\[0, 5\)"):
        check_site("i", -6, 5)
    with pytest.raises(TypeError, match="`i` must be an integer"):
        check_site("i", 1.0, 5)


def test_as_array():
    out = as_array("t", [[1, 2], [3, 4]], ndim=2)
    assert out.dtype == np.float64
    assert as_array("t", [True, False]).dtype == np.float64
    assert as_array("t", np.ones(2, np.complex64)).dtype == np.complex64
    with pytest.raises(ValueError, match=r"`t` must have 3 dimensions, got shape \(2, 2\)"):
        as_array("t", np.ones((2, 2)), ndim=3)
    with pytest.raises(TypeError, match="`t` must hold numbers"):
        as_array("t", ["a", "b"])
    with pytest.raises(TypeError, match="`t` must hold numbers"):
        as_array("t", np.array([object()]))
    with pytest.raises(ValueError, match="found NaN"):
        as_array("t", [1.0, np.nan])


# --------------------------------------------------------------------------- rng


def test_as_generator_seeds():
    assert as_generator(7).random() == np.random.default_rng(7).random()
    assert as_generator(np.int64(7)).random() == np.random.default_rng(7).random()
    g = np.random.default_rng(3)
    assert as_generator(g) is g
    assert isinstance(as_generator(None), np.random.Generator)


def test_as_generator_random_state_keeps_advancing():
    rs = np.random.RandomState(0)
    g = as_generator(rs)
    first = g.random()
    # the generator shares the RandomState's bit generator: drawing from one advances both
    assert as_generator(rs).random() != first
    ref = np.random.RandomState(0)
    assert rs.random() != ref.random()


@pytest.mark.parametrize("seed", [True, 1.5, "seed", [1, 2]])
def test_as_generator_rejects(seed):
    with pytest.raises(TypeError, match="`seed` must be None, an int"):
        as_generator(seed)


@pytest.mark.parametrize("value", [1, 2.5, np.float32(0.25), np.int64(3)])
def test_check_number_accepts_positive_reals(value):
    assert check_number("rate", value) == float(value)
    assert isinstance(check_number("rate", value), float)


def test_check_number_rejects_with_the_argument_name():
    assert check_number("alpha", 0, positive=False) == 0.0
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"`rate` must be a finite number > 0, got"):
            check_number("rate", bad)
    with pytest.raises(ValueError, match=r"`alpha` must be a finite number >= 0, got -0.5"):
        check_number("alpha", -0.5, positive=False)
    for bad in ("1", None, True, 1j):
        with pytest.raises(TypeError, match="`rate` must be a real number"):
            check_number("rate", bad)
