"""Batched environments against dense einsum references."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close_rtol, random_array
from hypothesis import given, settings
from hypothesis import strategies as st

from tnkit.ml.environments import (
    BatchEnvironments,
    extend_left,
    local_gradient,
    local_output,
    normalize_rows,
)


def _chain(rng, n, d, bond):
    bonds = [1] + [bond] * (n - 1) + [1]
    return [random_array(rng, (bonds[i], d, bonds[i + 1])) for i in range(n)]


def _dense_outputs(tensors, x):
    """Reference: contract the chain with each sample's product input, one sample at a time."""
    out = []
    for b in range(x.shape[0]):
        v = np.ones(1)
        for i, t in enumerate(tensors):
            v = np.einsum("l,lsr,s->r", v, t, x[b, i])
        out.append(v[0])
    return np.array(out)


def _true(env_and_scale):
    env, scale = env_and_scale
    return env * np.exp(scale)[:, None]


def test_left_right_environments_match_dense(rng):
    n, d, bond, batch = 7, 3, 4, 5
    tensors = _chain(rng, n, d, bond)
    x = rng.random((batch, n, d))
    envs = BatchEnvironments(tensors, x)
    full = _dense_outputs(tensors, x)
    for j in range(n + 1):
        left, right = _true(envs.left(j)), _true(envs.right(j))
        assert_close_rtol(np.einsum("bi,bi->b", left, right), full)
    left3 = np.ones((batch, 1))
    for i in range(3):
        left3 = np.einsum("bl,lsr,bs->br", left3, tensors[i], x[:, i])
    assert_close_rtol(_true(envs.left(3)), left3)


def test_two_site_output_and_projected_input(rng):
    n, d, bond, batch = 6, 2, 3, 4
    tensors = _chain(rng, n, d, bond)
    x = rng.random((batch, n, d))
    envs = BatchEnvironments(tensors, x)
    full = _dense_outputs(tensors, x)
    for i in range(n - 1):
        merged = np.einsum("asb,btc->astc", tensors[i], tensors[i + 1])
        left, right, scale = envs.local_inputs(i)
        assert_close_rtol(local_output(left, right, merged) * np.exp(scale), full)
        phi, scale2 = envs.projected_input(i)
        assert phi.shape == (batch, merged.shape[0], d, d, merged.shape[3])
        assert_close_rtol(np.einsum("blstr,lstr->b", phi, merged) * np.exp(scale2), full)


def test_local_output_keeps_extra_axes_and_gradient_is_its_transpose(rng):
    batch, dl, d, dr, k = 6, 3, 2, 4, 5
    left = rng.standard_normal((batch, dl, d))
    right = rng.standard_normal((batch, d, dr))
    merged = rng.standard_normal((dl, d, d, dr, k))
    out = local_output(left, right, merged)
    assert_close_rtol(out, np.einsum("bls,btr,lstrk->bk", left, right, merged))
    w = rng.standard_normal((batch, k))
    grad = local_gradient(left, right, w)
    assert_close_rtol(grad, np.einsum("bls,btr,bk->lstrk", left, right, w))
    # adjoint identity <w, A m> = <A^T w, m>
    assert_close_rtol(np.sum(w * out), np.sum(grad * merged))
    assert_close_rtol(local_gradient(left, right), np.einsum("bls,btr->lstr", left, right))


def test_one_site_inputs(rng):
    n, d, bond, batch = 5, 2, 3, 4
    tensors = _chain(rng, n, d, bond)
    x = rng.random((batch, n, d))
    envs = BatchEnvironments(tensors, x)
    full = _dense_outputs(tensors, x)
    for i in range(n):
        left, right, scale = envs.one_site_inputs(i)
        assert_close_rtol(local_output(left, right, tensors[i]) * np.exp(scale), full)


def test_set_tensor_invalidates_only_dependent_environments(rng, monkeypatch):
    n, d, bond, batch = 8, 2, 3, 3
    tensors = _chain(rng, n, d, bond)
    x = rng.random((batch, n, d))
    envs = BatchEnvironments(tensors, x)
    envs.left(n)
    envs.right(0)
    new = random_array(rng, tensors[4].shape)
    envs.set_tensor(4, new)
    assert max(envs._left) == 4 and min(envs._right) == 5
    tensors[4] = new
    full = _dense_outputs(tensors, x)
    assert_close_rtol(np.einsum("bi,bi->b", _true(envs.left(6)), _true(envs.right(6))), full)


def test_sweep_costs_linear_number_of_environment_updates(rng, monkeypatch):
    """A right sweep then a left sweep of two-site updates extends O(N) environments."""
    import tnkit.ml.environments as envmod

    n, d, bond, batch = 20, 2, 3, 2
    tensors = _chain(rng, n, d, bond)
    envs = BatchEnvironments(tensors, rng.random((batch, n, d)))
    calls = {"left": 0, "right": 0}
    orig_l, orig_r = envmod.extend_left, envmod.extend_right

    def count_l(*a):
        calls["left"] += 1
        return orig_l(*a)

    def count_r(*a):
        calls["right"] += 1
        return orig_r(*a)

    monkeypatch.setattr(envmod, "extend_left", count_l)
    monkeypatch.setattr(envmod, "extend_right", count_r)
    for i in list(range(n - 1)) + list(range(n - 2, -1, -1)):
        envs.local_inputs(i)
        envs.set_tensor(i, tensors[i])
        envs.set_tensor(i + 1, tensors[i + 1])
    assert calls["left"] + calls["right"] <= 4 * n


def test_long_chain_does_not_underflow(rng):
    n, d, bond, batch = 400, 2, 4, 3
    tensors = [t * 1e-3 for t in _chain(rng, n, d, bond)]  # plain product would be ~1e-1200
    x = rng.random((batch, n, d))
    envs = BatchEnvironments(tensors, x)
    env, scale = envs.left(n)
    assert np.all(np.isfinite(scale)) and np.all(scale < -1000)
    assert_close_rtol(np.abs(env), np.ones((batch, 1)))


def test_zero_rows_stay_zero():
    env, log = normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(env, [[0.6, 0.8], [0.0, 0.0]])
    np.testing.assert_allclose(log, [np.log(5.0), 0.0])


def test_bad_input_messages(rng):
    tensors = _chain(rng, 4, 2, 2)
    with pytest.raises(ValueError, match="features"):
        BatchEnvironments(tensors, rng.random((3, 5, 2)))
    with pytest.raises(ValueError, match="features"):
        BatchEnvironments(tensors, rng.random((3, 4)))
    envs = BatchEnvironments(tensors, rng.random((3, 4, 2)))
    with pytest.raises(IndexError, match="site"):
        envs.local_inputs(3)
    envs.set_tensor(1, None)
    with pytest.raises(ValueError, match="site 1"):
        envs.left(3)
    with pytest.raises(ValueError, match="tensor"):
        local_output(rng.random((2, 3)), rng.random((2, 4)), rng.random((3, 5)))


@settings(max_examples=25, deadline=None)
@given(dl=st.integers(1, 4), d=st.integers(1, 3), dr=st.integers(1, 4), batch=st.integers(1, 5))
def test_extend_left_matches_einsum(dl, d, dr, batch):
    r = np.random.default_rng(dl * 100 + d * 10 + dr + batch)
    env, t, x = r.standard_normal((batch, dl)), r.standard_normal((dl, d, dr)), r.standard_normal((batch, d))
    assert_close_rtol(extend_left(env, t, x), np.einsum("bl,lsr,bs->br", env, t, x))
