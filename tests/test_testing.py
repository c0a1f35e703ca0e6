"""The public testing helpers fail when they should."""

import numpy as np
import pytest

from tnkit import MPS
from tnkit.testing import TOL, assert_states_close, random_mps, tolerance


def test_tolerance_table():
    assert tolerance(np.float64) == TOL[np.dtype(np.complex128)] == 1e-10
    assert tolerance("float32") == 1e-4


def test_assert_states_close_passes_and_fails():
    psi = random_mps(8, 4, seed=1)
    assert_states_close(psi.canonicalize(5), psi, phase=True)
    assert_states_close(psi * 1j, psi)  # a global phase is the same state
    with pytest.raises(AssertionError, match="phase"):
        assert_states_close(psi * 1j, psi, phase=True)
    with pytest.raises(AssertionError, match="norms differ"):
        assert_states_close(psi * 2.0, psi)
    with pytest.raises(AssertionError, match="fidelity"):
        assert_states_close(random_mps(8, 4, seed=2), psi)
    assert isinstance(psi, MPS)
