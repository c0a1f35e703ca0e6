"""MPOLinear and LowRankLinear against dense layers: values, errors, gradients, forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_array
from tnkit.compress import LowRankLinear, MPOLinear, lowrank_factors
from tnkit.errors import OptionError
from torch_one_thread import one_torch_thread  # noqa: F401  (autouse: torch on one thread)


def _dense(rng, out, inp):
    lin = torch.nn.Linear(inp, out).double()
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(random_array(rng, (out, inp))))
    return lin


@pytest.mark.parametrize("mode", ["factored", "dense", "auto"])
@pytest.mark.parametrize("n_cores", [1, 2, 3])
def test_mpo_linear_exact_at_full_bond(rng, mode, n_cores):
    lin = _dense(rng, 12, 18)
    layer = MPOLinear.from_linear(lin, n_cores=n_cores, forward_mode=mode)
    x = torch.as_tensor(random_array(rng, (2, 5, 18)))
    torch.testing.assert_close(layer(x), lin(x), rtol=1e-10, atol=1e-10)
    assert layer.truncation_error == pytest.approx(0.0, abs=1e-20)


@settings(max_examples=15, deadline=None)
@given(st.sampled_from([(4, 6), (8, 9), (6, 16), (12, 12)]), st.integers(2, 3), st.integers(0, 1000))
def test_mpo_linear_factored_equals_dense_form(shape, n_cores, seed):
    rng = np.random.default_rng(seed)
    w = random_array(rng, shape)
    layer = MPOLinear.from_weight(torch.as_tensor(w), n_cores=n_cores, max_bond=2, forward_mode="factored")
    x = torch.as_tensor(random_array(rng, (3, shape[1])))
    torch.testing.assert_close(layer(x), x @ layer.dense_weight().T, rtol=1e-10, atol=1e-10)


def test_truncated_error_equals_discarded_weight(rng):
    lin = _dense(rng, 16, 24)
    layer = MPOLinear.from_linear(lin, out_dims=(4, 4), in_dims=(6, 4), max_bond=3, forward_mode="factored")
    w = lin.weight.detach().numpy()
    approx = layer.dense_weight().detach().numpy()
    assert layer.truncation_error == pytest.approx(np.linalg.norm(w - approx) ** 2 / np.linalg.norm(w) ** 2, rel=1e-10)
    x = torch.eye(24, dtype=torch.float64)  # outputs on the basis vectors are the weight's columns
    torch.testing.assert_close(layer(x) - lin.bias, torch.as_tensor(approx.T), rtol=1e-10, atol=1e-12)
    assert layer.bond_dims == (3,)
    assert layer.num_params == 3 * (4 * 6 + 4 * 4) + 16
    assert layer.compression_ratio == pytest.approx(layer.num_params / (16 * 24 + 16))


def test_input_scale_and_refit_keep_layer_consistent(rng):
    lin = _dense(rng, 8, 12)
    x = torch.as_tensor(random_array(rng, (400, 12)) * rng.uniform(0.1, 4.0, 12))
    cov = (x.T @ x / len(x)).numpy()
    scale = np.abs(x.numpy()).mean(0) ** 0.5
    plain = MPOLinear.from_linear(lin, n_cores=2, max_bond=2)
    aware = MPOLinear.from_linear(lin, n_cores=2, max_bond=2, input_scale=scale, covariance=cov)
    for mode in ("factored", "dense"):
        aware.forward_mode = mode
        torch.testing.assert_close(aware(x[:3]), x[:3] @ aware.dense_weight().T + lin.bias)
    err = lambda m: float(((m(x) - lin(x)) ** 2).sum().detach())  # noqa: E731
    assert err(aware) < err(plain)


def test_gradients_flow_and_match_finite_differences(rng):
    lin = _dense(rng, 6, 8)
    layer = MPOLinear.from_linear(lin, n_cores=2, max_bond=2, forward_mode="factored")
    x = torch.as_tensor(random_array(rng, (4, 8)))
    loss = (layer(x) ** 2).sum()
    loss.backward()
    assert all(c.grad is not None and c.grad.abs().sum() > 0 for c in layer.cores)
    core, idx, eps = layer.cores[1], (1, 0, 1, 0), 1e-6
    with torch.no_grad():
        core[idx] += eps
        up = float((layer(x) ** 2).sum())
        core[idx] -= 2 * eps
        down = float((layer(x) ** 2).sum())
        core[idx] += eps
    assert float(core.grad[idx]) == pytest.approx((up - down) / (2 * eps), rel=1e-6)


def test_auto_mode_compares_multiply_adds_with_multiply_adds(rng):
    # out (o0, o1) = (6, 8), in (i0, i1) = (9, 4), bond 5: the cheapest of the three orders of the
    # factored contraction, counted by hand in multiply-adds (opt_einsum counts twice that)
    w = torch.as_tensor(random_array(rng, (48, 36)))
    layer = MPOLinear.from_weight(w, out_dims=(6, 8), in_dims=(9, 4), max_bond=5)
    for batch in (1, 3, 64):
        last_first = batch * 9 * 4 * 5 * 8 + batch * 6 * 9 * 5 * 8
        first_first = batch * 4 * 9 * 6 * 5 + batch * 6 * 8 * 4 * 5
        cores_first = 6 * 9 * 5 * 8 * 4 + batch * 48 * 36
        factored, dense = layer._flops(batch)
        assert factored == min(last_first, first_first, cores_first)
        assert dense == batch * 48 * 36
        rebuild = 48 * 36 * 5
        assert layer.choose_mode(batch, cached=True) == ("factored" if factored < dense else "dense")
        expected = "factored" if factored < dense + rebuild else "dense"
        assert layer.choose_mode(batch, cached=False) == expected
    assert layer.choose_mode(1, cached=False) == "factored"  # 1,980 against 1,728 + 8,640
    assert layer.choose_mode(64, cached=True) == "dense"
    with pytest.raises(OptionError, match="forward_mode"):
        MPOLinear(layer.cores, forward_mode="fast")


@pytest.mark.parametrize("mode", ["factored", "dense"])
@pytest.mark.parametrize("n_cores", [1, 2, 3, 4])
@pytest.mark.parametrize("block", [None, 1])
def test_gradient_free_forward_equals_the_autograd_forward(rng, monkeypatch, mode, n_cores, block):
    import tnkit.compress.layers.mpo_linear as mpo_linear

    if block is not None:  # one input row or one value of o_0 per block
        monkeypatch.setattr(mpo_linear, "INFERENCE_BLOCK_BYTES", block)
    lin = _dense(rng, 36, 24)
    layer = MPOLinear.from_linear(lin, n_cores=n_cores, max_bond=None if n_cores == 1 else 5,
                                  forward_mode=mode, input_scale=rng.uniform(0.5, 2.0, 24))
    x = torch.as_tensor(random_array(rng, (2, 7, 24)))
    expected = layer(x).detach()
    with torch.no_grad():
        got = layer(x)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    reference = x @ layer.dense_weight().detach().T + lin.bias.detach()
    torch.testing.assert_close(got, reference, rtol=1e-10, atol=1e-10)


def test_gradient_free_forward_keeps_its_intermediates_in_blocks(rng):
    from tnkit.core import workspace

    w = torch.as_tensor(random_array(rng, (96, 96)))
    layer = MPOLinear.from_weight(w, out_dims=(8, 12), in_dims=(12, 8), max_bond=24, forward_mode="factored")
    x = torch.as_tensor(random_array(rng, (512, 96)))
    workspace.release()
    with torch.no_grad():
        y = layer(x)
        # unblocked, the first intermediate alone would be 512 * 12 * 24 * 12 doubles (14 MiB)
        assert 0 < workspace.cached_bytes() <= 2**21
        y_again = y.clone()
        layer(2 * x)  # the result is new memory, not a scratch view the next call overwrites
    torch.testing.assert_close(y, y_again, rtol=0, atol=0)
    torch.testing.assert_close(y, x @ layer.dense_weight().T, rtol=1e-10, atol=1e-10)


def test_dense_cache_follows_updates(rng):
    layer = MPOLinear.from_weight(torch.as_tensor(random_array(rng, (8, 8))), n_cores=2, forward_mode="dense")
    x = torch.ones(1, 8, dtype=torch.float64)
    with torch.no_grad():
        y0 = layer(x)
        layer.cores[0].mul_(2.0)
        torch.testing.assert_close(layer(x), 2 * y0)


def test_bad_cores_and_inputs(rng):
    with pytest.raises(ValueError, match="4 axes"):
        MPOLinear([np.ones((2, 2))])
    with pytest.raises(ValueError, match="bond 0"):
        MPOLinear([np.ones((1, 2, 2, 3)), np.ones((2, 2, 2, 1))])
    layer = MPOLinear([np.ones((1, 2, 2, 1))])
    with pytest.raises(ValueError, match="2 features"):
        layer(torch.ones(3, 5))


@pytest.mark.parametrize("method", ["svd", "asvd", "whiten"])
def test_lowrank_full_rank_exact_and_truncated_errors(rng, method):
    lin = _dense(rng, 10, 14)
    x = torch.as_tensor(random_array(rng, (300, 14)) * rng.uniform(0.1, 3.0, 14))
    cov, scale = (x.T @ x / len(x)).numpy(), np.abs(x.numpy()).mean(0)
    full = LowRankLinear.from_linear(lin, rank=10, method=method, input_scale=scale, covariance=cov)
    torch.testing.assert_close(full(x[:4]), lin(x[:4]), rtol=1e-8, atol=1e-8)
    low = LowRankLinear.from_linear(lin, rank=3, method=method, input_scale=scale, covariance=cov)
    assert low.num_params == 3 * 24 + 10 and low.rank == 3
    w = lin.weight.detach().numpy()
    if method == "svd":
        s = np.linalg.svd(w, compute_uv=False)
        assert low.truncation_error == pytest.approx((s[3:] ** 2).sum() / (s**2).sum(), rel=1e-10)


def test_whitened_svd_minimises_output_error(rng):
    w = random_array(rng, (10, 14))
    x = random_array(rng, (500, 14)) * rng.uniform(0.05, 5.0, 14)
    cov = x.T @ x / len(x)
    out_err = lambda u, v: float(np.linalg.norm(x @ (w - u @ v).T) ** 2)  # noqa: E731
    errs = {m: out_err(*lowrank_factors(w, 4, method=m, input_scale=np.abs(x).mean(0), covariance=cov)[:2])
            for m in ("svd", "asvd", "whiten")}
    assert errs["whiten"] <= errs["asvd"] * (1 + 1e-9) and errs["whiten"] <= errs["svd"] * (1 + 1e-9)


def test_lowrank_bad_inputs(rng):
    w = random_array(rng, (6, 8))
    with pytest.raises(ValueError, match="`rank` must be at most 6"):
        lowrank_factors(w, 7)
    with pytest.raises(ValueError, match="needs `input_scale`"):
        lowrank_factors(w, 2, method="asvd")
    with pytest.raises(OptionError, match="`method`"):
        lowrank_factors(w, 2, method="qr")


@pytest.mark.parametrize("ridge", [0.0, 0.1])
def test_whitened_svd_in_the_covariance_storage_gives_the_same_factors(rng, ridge):
    w = random_array(rng, (10, 14))
    x = random_array(rng, (50, 14))
    cov = x.T @ x / len(x)
    u, v, err = lowrank_factors(w, 4, method="whiten", covariance=cov, ridge=ridge)
    np.testing.assert_array_equal(cov, x.T @ x / len(x))  # left alone by default
    u2, v2, err2 = lowrank_factors(w, 4, method="whiten", covariance=cov, ridge=ridge, overwrite_covariance=True)
    np.testing.assert_allclose(u2 @ v2, u @ v, atol=1e-12)
    assert err2 == pytest.approx(err, rel=1e-12)
    assert np.array_equal(np.tril(cov, -1), np.zeros_like(cov))  # cov now holds S^T, S the whitener


def test_activation_stats_give_their_storage_to_the_last_user(rng):
    from tnkit.compress.calibrate.calibration import ActivationStats

    x = torch.as_tensor(random_array(rng, (3, 20, 9)), dtype=torch.float32)
    st = ActivationStats.zeros(9)
    st.update(x[:2])
    st.update(x[2:])
    flat = x.reshape(-1, 9).double().numpy()
    expected = flat.T @ flat / 60
    np.testing.assert_allclose(st.covariance, expected, rtol=1e-5)
    storage = st.second_moment_sum
    taken = st.take_covariance()
    assert taken is storage and st.second_moment_sum is None
    np.testing.assert_allclose(taken, expected, rtol=1e-5)
    np.testing.assert_array_equal(taken, taken.T)
    with pytest.raises(ValueError, match="take_covariance"):
        st.update(x)
    with pytest.raises(ValueError, match="take_covariance"):
        st.covariance


@pytest.mark.parametrize("band", [4, 7, 9, 64])
def test_gram_bands_give_the_upper_triangle_of_x_t_x(rng, band):
    from tnkit.compress.calibrate.calibration import gram_upper

    x = torch.as_tensor(random_array(rng, (30, 9)), dtype=torch.float64)
    full = (x.T @ x).numpy()
    got = np.zeros_like(full)
    for lo, block in gram_upper(x, band=band):
        got[lo:lo + block.shape[0], lo:] = block.numpy()
    np.testing.assert_allclose(np.triu(got), np.triu(full), rtol=1e-12)


@pytest.mark.parametrize("band", [4, 9, 64])
def test_gram_added_in_place_in_bands_is_the_upper_triangle_of_x_t_x(rng, band):
    from tnkit.compress.calibrate.calibration import add_gram_upper

    x = torch.as_tensor(random_array(rng, (30, 9)), dtype=torch.float64)
    start = random_array(rng, (9, 9))
    total = torch.as_tensor(start.copy())
    add_gram_upper(total, x, band=band)
    got = total.numpy()
    np.testing.assert_allclose(np.triu(got), np.triu(start + (x.T @ x).numpy()), rtol=1e-12)
    np.testing.assert_array_equal(np.tril(got, -band), np.tril(start, -band))  # below the bands: untouched


def test_accumulated_statistics_are_read_after_their_float32_sum_is_added(rng, monkeypatch):
    from tnkit.compress.calibrate import calibration

    monkeypatch.setattr(calibration, "GRAM_BAND", 5)
    x = torch.as_tensor(random_array(rng, (4, 50, 13)), dtype=torch.float32)
    st, ref = calibration.ActivationStats.zeros(13), calibration.ActivationStats.zeros(13)
    for part in x:
        st.accumulate(part)
        ref.update(part)
    assert not st.second_moment_sum.any()  # the batches wait in the float32 sum
    flat = x.reshape(-1, 13).double().numpy()
    np.testing.assert_allclose(st.covariance, flat.T @ flat / 200, rtol=1e-5, atol=1e-7)  # reading adds them
    np.testing.assert_allclose(st.covariance, ref.covariance, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(st.mean_abs, np.abs(flat).mean(0), rtol=1e-6)
    np.testing.assert_allclose(st.variance, np.diag(st.covariance), rtol=1e-12)
    st.accumulate(x[0])
    taken = st.take_covariance()  # the last user also gets what was pending
    np.testing.assert_allclose(taken, (flat.T @ flat + flat[:50].T @ flat[:50]) / 250, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="take_covariance"):
        st.accumulate(x[0])


def test_output_energy_is_remembered_per_weight_value(rng, monkeypatch):
    from tnkit.compress.calibrate import calibration

    st = calibration.ActivationStats.zeros(7)
    st.update(torch.as_tensor(random_array(rng, (40, 7)), dtype=torch.float32))
    w = random_array(rng, (5, 7))
    c = st.covariance
    assert st.output_energy(w) == pytest.approx(float(np.trace(w @ c @ w.T)), rel=1e-5)
    monkeypatch.setattr(calibration.ActivationStats, "covariance", property(lambda self: 1 / 0))
    assert st.output_energy(w.copy(), c) == st.output_energy(w)  # an equal weight: not formed again
    w2 = w.copy()
    w2[0, 0] += 1.0
    assert st.output_energy(w2, c) == pytest.approx(float(np.trace(w2 @ c @ w2.T)), rel=1e-5)


def test_activation_stats_in_bands_equal_the_exact_second_moment(rng, monkeypatch):
    from tnkit.compress.calibrate import calibration

    monkeypatch.setattr(calibration, "GRAM_BAND", 5)  # 13 inputs: three bands, as a wide down_proj input takes
    x = torch.as_tensor(random_array(rng, (4, 50, 13)), dtype=torch.float32)
    st = calibration.ActivationStats.zeros(13)
    for part in x:
        st.update(part)
    flat = x.reshape(-1, 13).double().numpy()
    np.testing.assert_allclose(st.covariance, flat.T @ flat / 200, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(st.mean_abs, np.abs(flat).mean(0), rtol=1e-6)
    assert st.n_tokens == 200


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_cores_give_the_float32_product_rounded_once(rng, dtype):
    lin = _dense(rng, 24, 36).float()
    layer = MPOLinear.from_linear(lin, n_cores=3, max_bond=4)
    narrow = MPOLinear.from_linear(lin, n_cores=3, max_bond=4).to(dtype)
    with torch.no_grad():
        for c in layer.cores:
            c.copy_(c.to(dtype).float())  # the same (rounded) cores in float32
    w = narrow.dense_weight()
    assert w.dtype == dtype
    assert torch.equal(w, layer.dense_weight().to(dtype))
