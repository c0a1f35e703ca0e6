"""Perfect sampling, amplitudes and probabilities against the dense state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from conftest import DTYPES, all_configurations, assert_close

from tnkit import MPS

N_SAMPLES = 40_000


def _dense_probabilities(psi):
    v = psi.to_dense()
    p = np.abs(v) ** 2
    return p / p.sum()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dims", [(2,) * 6, (2, 3, 2, 3)])
def test_sample_frequencies(dtype, dims):
    """Empirical frequencies match |psi|^2.

    With n = 40000 samples each count is Binomial(n, p): we require every
    frequency within 5 standard deviations (probability of a false alarm over all
    outcomes < 64 * 6e-7) and Pearson's chi-square test to pass at level 1e-6
    (outcomes with an expected count below 5 are pooled). Everything is seeded, so
    the test is deterministic; the bounds say why the seed is not cherry-picked.
    """
    psi = MPS.random(len(dims), 4, phys_dim=dims, dtype=dtype, seed=101) * 0.3  # not normalised
    p = _dense_probabilities(psi)
    samples = psi.sample(N_SAMPLES, seed=7)
    assert samples.shape == (N_SAMPLES, len(dims))
    assert np.issubdtype(samples.dtype, np.integer)
    assert samples.min() >= 0 and np.all(samples.max(axis=0) < np.array(dims))
    idx = np.ravel_multi_index(samples.T, dims)
    counts = np.bincount(idx, minlength=p.size)
    freq = counts / N_SAMPLES
    sigma = np.sqrt(p * (1 - p) / N_SAMPLES)
    assert np.all(np.abs(freq - p) <= 5 * sigma + 1e-12)
    expected = p * N_SAMPLES
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    stat = np.sum((obs - exp) ** 2 / exp)
    assert scipy.stats.chi2.sf(stat, len(obs) - 1) > 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
def test_sample_log_prob(dtype):
    dims = (2, 3, 2, 2, 3)
    psi = MPS.random(len(dims), 5, phys_dim=dims, dtype=dtype, seed=3) * 4.0
    psi.canonicalize_(3)  # sampling must move the centre itself
    v = psi.to_dense()
    p = _dense_probabilities(psi)
    samples, log_prob = psi.sample(500, seed=1, return_log_prob=True)
    assert log_prob.shape == (500,)
    idx = np.ravel_multi_index(samples.T, dims)
    np.testing.assert_allclose(log_prob, np.log(p[idx]), rtol=0, atol=1e-10)
    np.testing.assert_allclose(psi.probabilities(samples), p[idx], rtol=1e-10)
    assert_close(psi.to_dense(), v, dtype)  # the state is unchanged


def test_sample_reproducible():
    psi = MPS.random(6, 3, seed=0)
    a = psi.sample(100, seed=5)
    b = psi.sample(100, seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, psi.sample(100, seed=6))
    g = np.random.default_rng(5)
    np.testing.assert_array_equal(psi.sample(100, seed=g), a)
    assert not np.array_equal(psi.sample(100, seed=g), a)  # the generator advanced


@pytest.mark.parametrize("n_samples", [1, 31, 32, 100, 1000, 2049])
def test_sample_blocks_independent_of_threads(n_samples, monkeypatch):
    """Samples split into blocks drawn on parallel threads: same seed, same samples."""
    from tnkit.core import threads
    from tnkit.mps import sampling

    sizes = sampling._block_sizes(n_samples)
    assert sum(sizes) == n_samples and len(sizes) <= sampling.MAX_SAMPLE_BLOCKS
    assert len(sizes) == 1 or min(sizes) >= sampling.MIN_BLOCK_ROWS
    psi = MPS.random(7, 6, phys_dim=3, seed=2)
    try:
        threads.set_num_threads(1)
        one, lp_one = psi.sample(n_samples, seed=9, return_log_prob=True)
        threads.set_num_threads(3)
        monkeypatch.setattr(sampling, "PARALLEL_SAMPLE_WORK", 1)  # split even this small draw
        pools = []
        real_pool = threads._pool
        monkeypatch.setattr(threads, "_pool", lambda n: pools.append(n) or real_pool(n))
        three, lp_three = psi.sample(n_samples, seed=9, return_log_prob=True)
        assert pools == ([min(3, len(sizes))] if len(sizes) > 1 else [])
    finally:
        threads.set_num_threads(None)
    np.testing.assert_array_equal(one, three)
    np.testing.assert_array_equal(lp_one, lp_three)
    np.testing.assert_allclose(lp_one, np.log(psi.probabilities(one)), atol=1e-10)
    if len(sizes) > 1:  # blocks draw from different streams, not copies of one
        first, second = one[: sizes[0]], one[sizes[0] : 2 * sizes[0]]
        assert not np.array_equal(first, second)


def test_sample_product_state_is_deterministic():
    psi = MPS.product_state("011021", phys_dim=3)
    samples, log_prob = psi.sample(50, seed=0, return_log_prob=True)
    np.testing.assert_array_equal(samples, np.tile([0, 1, 1, 0, 2, 1], (50, 1)))
    np.testing.assert_allclose(log_prob, 0.0, atol=1e-14)


def test_sample_ghz():
    ghz = MPS.product_state("00000") + MPS.product_state("11111")
    samples = ghz.sample(2000, seed=4)
    assert set(map(tuple, samples)) == {(0,) * 5, (1,) * 5}
    frac = samples[:, 0].mean()
    assert abs(frac - 0.5) < 5 * math.sqrt(0.25 / 2000)


def test_sample_zero_and_errors():
    psi = MPS.random(4, 2, seed=0)
    assert psi.sample(0, seed=0).shape == (0, 4)
    s, lp = psi.sample(0, seed=0, return_log_prob=True)
    assert s.shape == (0, 4) and lp.shape == (0,)
    with pytest.raises(ValueError, match="`n_samples` must be an integer >= 0"):
        psi.sample(-1)
    with pytest.raises(TypeError, match="`n_samples` must be an integer"):
        psi.sample(10.0)
    with pytest.raises(TypeError, match="`seed` must be None, an int"):
        psi.sample(10, seed="x")


# --------------------------------------------------------------------------- amplitudes


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dims", [(2,) * 5, (2, 3, 2, 4)])
def test_amplitudes_match_dense(rng, dtype, dims):
    psi = MPS.random(len(dims), 4, phys_dim=dims, dtype=dtype, seed=rng, normalize=False)
    v = psi.to_dense()
    configs = all_configurations(dims)
    assert_close(psi.amplitudes(configs), v, dtype)
    phase, log_abs = psi.log_amplitudes(configs)
    assert_close(phase * np.exp(log_abs), v, dtype)
    np.testing.assert_allclose(np.abs(phase), 1.0, rtol=1e-12)
    np.testing.assert_allclose(log_abs, np.log(np.abs(v)), rtol=0, atol=1e-10)
    probs = psi.probabilities(configs)
    np.testing.assert_allclose(probs, np.abs(v) ** 2 / np.vdot(v, v).real, rtol=1e-10)
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    k = 5
    assert_close(psi.amplitude(configs[k]), v[k], dtype)
    assert_close(psi.amplitude(list(configs[k])), v[k], dtype)


def test_amplitudes_of_zero_entries():
    psi = MPS.product_state("0110")
    configs = np.array([[0, 1, 1, 0], [1, 1, 1, 0]])
    np.testing.assert_array_equal(psi.amplitudes(configs), [1.0, 0.0])
    phase, log_abs = psi.log_amplitudes(configs)
    np.testing.assert_array_equal(phase, [1.0, 0.0])
    assert log_abs[0] == 0.0 and log_abs[1] == -np.inf
    np.testing.assert_array_equal(psi.probabilities(configs), [1.0, 0.0])


def test_log_amplitudes_long_chain():
    n = 1000
    vecs = [np.array([3.0, -4.0j]) for _ in range(n)]
    psi = MPS.product_state(vecs)
    configs = np.zeros((3, n), dtype=int)
    configs[1, :10] = 1  # ten factors of -4j
    configs[2, :] = 1
    phase, log_abs = psi.log_amplitudes(configs)
    expected = [n * math.log(3), 990 * math.log(3) + 10 * math.log(4), n * math.log(4)]
    np.testing.assert_allclose(log_abs, expected, rtol=1e-13)
    np.testing.assert_allclose(phase, [1.0, (-1j) ** 10, (-1j) ** n], atol=1e-9)
    # log-probabilities stay finite although the probabilities themselves underflow
    log_p = 2 * log_abs - 2 * psi.log_norm()
    np.testing.assert_allclose(log_p, 2 * np.array(expected) - 2 * n * math.log(5), rtol=1e-12)


def test_check_configurations_errors():
    psi = MPS.random(4, 2, phys_dim=(2, 3, 2, 2), seed=0)
    with pytest.raises(ValueError, match=r"`configs` must have shape \(n, 4\)"):
        psi.amplitudes(np.zeros((2, 3), dtype=int))
    with pytest.raises(ValueError, match=r"`configs` must have shape \(n, 4\)"):
        psi.amplitudes(np.zeros((2, 4, 1), dtype=int))
    msg = r"`configs`\[1, 1\] = 3 is not a basis state of site 1 \(dimension 3\)"
    with pytest.raises(ValueError, match=msg):
        psi.amplitudes([[0, 2, 0, 0], [0, 3, 0, 0]])
    with pytest.raises(ValueError, match=r"`configs`\[0, 3\] = -1"):
        psi.amplitudes([[0, 0, 0, -1]])
    with pytest.raises(TypeError, match="`configs` must hold integers, got dtype float64"):
        psi.amplitudes([[0, 0.5, 0, 1]])
    with pytest.raises(TypeError, match="`configs` must hold integers"):
        psi.log_amplitudes([["a", "b", "c", "d"]])
    # integral floats, 1-d rows and booleans are accepted
    ref = psi.amplitudes([[0, 1, 0, 1]])
    assert_close(psi.amplitudes([[0.0, 1.0, 0.0, 1.0]]), ref)
    assert_close(psi.amplitudes([0, 1, 0, 1]), ref)
    assert_close(psi.amplitudes(np.array([[False, True, False, True]])), ref)
    assert psi.amplitudes(np.zeros((0, 4), dtype=int)).shape == (0,)
