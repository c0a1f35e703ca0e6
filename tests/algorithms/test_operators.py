"""Matrix-free effective Hamiltonians against dense einsum contractions, with and without
identity blocks in the environments."""

from __future__ import annotations

import numpy as np
import pytest

from tnkit.algorithms.environments import OneSiteOperator, TwoSiteOperator, ZeroSiteOperator, identity_channel


def _rand(rng, shape, complex_=True):
    a = rng.standard_normal(shape)
    return a + 1j * rng.standard_normal(shape) if complex_ else a


def _envs(rng, dl, dr, w, left_id, right_id):
    left, right = _rand(rng, (dl, w, dl)), _rand(rng, (dr, w, dr))
    if left_id is not None:
        left[:, left_id, :] = np.eye(dl)
    if right_id is not None:
        right[:, right_id, :] = np.eye(dr)
    return left, right


@pytest.mark.parametrize("dims", [(5, 7, 4), (1, 3, 1), (3, 1, 1), (4, 4, 5)])
@pytest.mark.parametrize("ids", [(None, None), (0, None), (None, 1), (0, 1), (2, 0)])
@pytest.mark.parametrize("state_complex", [True, False])
@pytest.mark.parametrize("mpo_real", [True, False])
def test_effective_operators_match_einsum(dims, ids, state_complex, mpo_real):
    dl, dr, w = dims
    left_id, right_id = (i if i is not None and i < w else None for i in ids)
    rng = np.random.default_rng(sum(dims))
    left, right = _envs(rng, dl, dr, w, left_id, right_id)
    w1 = _rand(rng, (w, 2, 2, 3), not mpo_real).astype(complex)  # a real MPO stored as complex
    w2 = _rand(rng, (3, 2, 2, w), not mpo_real)
    w0 = _rand(rng, (w, 2, 2, w), not mpo_real)
    x1 = _rand(rng, (dl, 2, dr), state_complex)
    x2 = _rand(rng, (dl, 2, 2, dr), state_complex)
    h1 = OneSiteOperator(left, w0, right)
    h2 = TwoSiteOperator(left, w1, w2, right)
    for _ in range(2):  # the second call reuses the operator's work arrays
        expected = np.einsum("awx,wtsv,xsy,bvy->atb", left, w0, x1, right)
        np.testing.assert_allclose(h1(x1), expected, atol=1e-12)
        np.testing.assert_allclose(
            h2(x2), np.einsum("awx,wtsu,uTSv,xsSy,bvy->atTb", left, w1, w2, x2, right), atol=1e-12
        )
    if dl == dr:
        c = _rand(rng, (dl, dl), state_complex)
        np.testing.assert_allclose(
            ZeroSiteOperator(left, right)(c), np.einsum("awx,xy,bwy->ab", left, c, right), atol=1e-12
        )


def test_identity_channel_detection():
    rng = np.random.default_rng(0)
    env = _rand(rng, (4, 3, 4))
    assert identity_channel(env) is None
    env[:, 2, :] = np.eye(4)
    assert identity_channel(env) == 2
    env[1, 2, 0] = 1e-9  # not the identity within the default tolerance
    assert identity_channel(env) is None
    assert identity_channel(_rand(rng, (3, 2, 4))) is None  # not square
