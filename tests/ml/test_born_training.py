"""Born-machine training: gradients against finite differences, NLL decrease over
sweeps, the crash settings of the original code, the gradient trainer."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import all_configurations

import tnkit
from tnkit.ml import MPSBornMachine
from tnkit.ml.born_sweeps import CountedEnvironments, PairProblem
from tnkit.ml.born_training import (
    absorb_left,
    absorb_right,
    group_rows,
    nll_and_gradient,
    sweep_train,
)
from tnkit.ml.environments import CodedEnvironments


def dense_nll(tensors, X) -> float:
    psi = tnkit.MPS(tensors).to_dense().reshape(tuple(t.shape[1] for t in tensors))
    p = np.abs(psi) ** 2 / np.sum(np.abs(psi) ** 2)
    return float(-np.mean(np.log(p[tuple(X.T)])))


def random_data(rng, n, dims):
    return np.stack([rng.integers(0, d, size=n) for d in dims], axis=1)


def test_group_rows_partitions_samples(rng):
    a, b = rng.integers(0, 3, 50), rng.integers(0, 2, 50)
    groups = group_rows(a, b, dims=(3, 2))
    rows = np.sort(np.concatenate([r for _, r in groups]))
    np.testing.assert_array_equal(rows, np.arange(50))
    for (s, t), r in groups:
        assert np.all(a[r] == s) and np.all(b[r] == t)


def test_absorb_matches_einsum(rng):
    env, a, x = rng.standard_normal((7, 3)), rng.standard_normal((3, 4, 5)), rng.integers(0, 4, 7)
    np.testing.assert_allclose(absorb_left(env, a, x), np.einsum("na,anb->nb", env, a[:, x, :]))
    env_r = rng.standard_normal((7, 5))
    np.testing.assert_allclose(absorb_right(env_r, a, x), np.einsum("anb,nb->na", a[:, x, :], env_r))


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("dims", [(2,) * 6, (2, 3, 2, 4, 2), (2,) * 11])
def test_full_gradient_matches_finite_differences(rng, dims, dtype):
    """Real part: dNLL/dRe; imaginary part: dNLL/dIm (11 sites: renormalised environments)."""
    mps = tnkit.MPS.random(len(dims), 3, phys_dim=list(dims), seed=rng, normalize=False, dtype=dtype)
    tensors = [np.array(t) * 1.3 for t in mps.tensors]
    X = random_data(rng, 20, dims)
    nll, grads = nll_and_gradient(tensors, X)
    assert nll == pytest.approx(dense_nll(tensors, X), rel=1e-10)
    h = 1e-6
    parts = (1.0, 1j) if dtype == np.complex128 else (1.0,)
    for i in (0, len(dims) // 2, len(dims) - 1):
        for idx in list(np.ndindex(tensors[i].shape))[:6]:
            for unit in parts:
                plus = [t.copy() for t in tensors]
                minus = [t.copy() for t in tensors]
                plus[i][idx] += h * unit
                minus[i][idx] -= h * unit
                fd = (dense_nll(plus, X) - dense_nll(minus, X)) / (2 * h)
                got = grads[i][idx].real if unit == 1.0 else grads[i][idx].imag
                assert got == pytest.approx(fd, rel=1e-5, abs=1e-7)


def test_pair_gradient_matches_finite_differences(rng):
    """The two-site update direction is dNLL/dB at Z = ||B||**2 = 1 (canonical form)."""
    dims = (2, 3, 2, 2, 2)
    psi = tnkit.MPS.random(5, 3, phys_dim=list(dims), seed=rng)
    k = 2
    psi.canonicalize_(k)
    tensors = list(psi.tensors)
    X = random_data(rng, 30, dims)
    envs = CodedEnvironments(X)
    envs.build_left(tensors, k)
    envs.build_right(tensors, k + 2)
    merged = tnkit.contract("asb,btc->astc", tensors[k], tensors[k + 1])
    problem = PairProblem(envs, k, (dims[k], dims[k + 1]))
    # the local amplitudes (with the stored log-scales) are the dense amplitudes
    dense = psi.to_dense().reshape(dims)[tuple(X.T)]
    np.testing.assert_allclose(problem.psi(merged) * np.exp(problem.log_scale), dense, rtol=1e-10)
    merged = merged / np.linalg.norm(merged)
    grad = 2 * merged - 2 * problem.data_gradient(merged)   # dNLL/dB at ||B|| = 1

    def nll(b):  # log Z - mean log psi**2 with Z = ||B||**2 (the rest is canonical)
        return np.log(np.sum(b**2)) - np.mean(np.log(problem.psi(b) ** 2))

    h = 1e-6
    for idx in list(np.ndindex(merged.shape))[::5][:10]:
        plus, minus = merged.copy(), merged.copy()
        plus[idx] += h
        minus[idx] -= h
        fd = (nll(plus) - nll(minus)) / (2 * h)
        assert grad[idx] == pytest.approx(fd, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("width", [1, 2])
def test_distinct_rows_with_frequencies_give_the_nll_and_gradient_of_all_rows(rng, width):
    """Repeated samples: the counted environments (distinct rows) give the NLL and D(T) of every row."""
    dims = (2, 3, 2, 2, 2)
    psi = tnkit.MPS.random(5, 3, phys_dim=list(dims), seed=rng, dtype=np.complex128)
    k = 1
    psi.canonicalize_(k)
    tensors = list(psi.tensors)
    X = random_data(rng, 15, dims)[rng.integers(0, 15, size=120)]   # 120 rows, at most 15 distinct
    problems = []
    for envs in (CodedEnvironments(X), CountedEnvironments(X)):
        envs.build_left(tensors, k)
        envs.build_right(tensors, k + width)
        problems.append(PairProblem(envs, k, dims[k : k + width], getattr(envs, "weights", None)))
    assert len(problems[1].log_scale) <= 15
    centre = tensors[k] if width == 1 else tnkit.contract("asb,btc->astc", tensors[k], tensors[k + 1])
    every, counted = problems
    assert counted.nll(centre) == pytest.approx(every.nll(centre), rel=1e-12)
    assert counted.nll(centre) == pytest.approx(dense_nll(tensors, X), rel=1e-10)
    np.testing.assert_allclose(counted.data_gradient(centre), every.data_gradient(centre), rtol=1e-10, atol=1e-13)


def test_sweeps_decrease_nll_and_report_it_exactly(rng):
    dims = (2,) * 10
    X = random_data(rng, 200, dims)
    X[:, 5] = X[:, 4]                                   # some structure to learn
    mps, history = sweep_train(
        tnkit.MPS.random(10, 2, seed=rng), X, n_sweeps=5, learning_rate=0.05,
        n_descent_steps=5, max_bond=8, cutoff=1e-10,
    )
    assert np.all(np.diff(history.nll) < 1e-9)
    assert history.nll[-1] == pytest.approx(dense_nll(list(mps.tensors), X), rel=1e-10)
    assert mps.norm() == pytest.approx(1.0)
    assert mps.max_bond_dim <= 8 and history.max_bond[-1] == mps.max_bond_dim


def test_original_crash_settings_train_without_overflow(rng):
    """lr 0.05, cutoff 1e-7, random start on 300 sites: everything stays finite."""
    X = (rng.random((40, 300)) < 0.2).astype(int)
    model = MPSBornMachine(max_bond=6, cutoff=1e-7, learning_rate=0.05, n_sweeps=2,
                           n_descent_steps=3, random_state=0).fit(X)
    assert np.all(np.isfinite(model.history_.nll))
    assert np.all(np.isfinite(model.log_prob(X)))
    assert model.history_.nll[-1] < model.history_.nll[0]


def test_gradient_trainer_decreases_nll(rng):
    dims = (2,) * 8
    X = random_data(rng, 120, dims)
    X[:, 1] = X[:, 0]
    X[:, 6] = 1 - X[:, 7]
    model = MPSBornMachine(trainer="gradient", max_bond=4, n_epochs=8, batch_size=40,
                           learning_rate=0.05, random_state=0).fit(X)
    nll = model.history_.nll
    assert nll[-1] < nll[0] - 0.3
    assert -model.score(X) == pytest.approx(nll[-1], rel=1e-9)
    assert model.mps_.max_bond_dim == 4


def test_bas_two_sweeps_reach_ln30():
    from tnkit.datasets import bars_and_stripes

    X = bars_and_stripes(4)
    for seed in range(3):
        model = MPSBornMachine(max_bond=32, init_bond=16, n_sweeps=2, random_state=seed).fit(X)
        assert abs(model.history_.nll[-1] - np.log(30)) < 1e-3


def test_categorical_features_exact_on_small_data(rng):
    """Enough bond and sweeps: the model learns the empirical distribution exactly."""
    dims = (3, 2, 4)
    X = random_data(rng, 12, dims)
    model = MPSBornMachine(max_bond=None, init_bond=8, n_sweeps=6, n_categories=list(dims),
                           learning_rate=0.1, random_state=0).fit(X)
    configs = all_configurations(dims)
    p = np.exp(model.log_prob(configs))
    codes = np.ravel_multi_index(X.T, dims)
    empirical = np.bincount(codes, minlength=p.size) / len(X)
    np.testing.assert_allclose(p, empirical, atol=2e-3)


def test_normalized_gradient_sweeps_decrease_nll(rng):
    X = random_data(rng, 100, (2,) * 8)
    X[:, 3] = X[:, 2]
    model = MPSBornMachine(max_bond=6, normalized_gradient=True, learning_rate=0.005, n_descent_steps=1,
                           n_sweeps=4, random_state=0).fit(X)
    assert np.all(np.diff(model.history_.nll) < 0)
    assert model.history_.nll[-1] == pytest.approx(-model.score(X), rel=1e-10)


def test_minibatch_sweeps_train_on_subsets(rng):
    """Each sweep sees 60 of 300 samples; the model still learns the two-mode structure."""
    mode = rng.integers(0, 2, size=(300, 1))
    X = np.where(rng.random((300, 8)) < 0.1, 1 - mode, mode)
    model = MPSBornMachine(max_bond=4, n_sweeps=6, batch_size=60, n_descent_steps=2, random_state=0).fit(X)
    assert np.all(np.isfinite(model.history_.nll))
    q = X.mean(axis=0)                                   # best independent-pixel model
    independent = -np.mean(np.sum(X * np.log(q) + (1 - X) * np.log(1 - q), axis=1))
    assert -model.score(X) < independent - 1.0


def test_far_too_large_rate_cannot_raise_the_nll(rng):
    """The pair step is line-searched: a rate of 0.45 (ten times the default) still gives a
    monotone NLL, so the decay (which acts only after a raised NLL) never fires. Before the
    line search this setting raised the NLL and relied on the decay."""
    X = random_data(rng, 80, (2,) * 6)
    model = MPSBornMachine(max_bond=4, n_sweeps=6, learning_rate=0.45, n_descent_steps=5,
                           learning_rate_decay=0.5, random_state=0).fit(X)
    h = model.history_
    assert np.all(np.diff(h.nll) <= 1e-12)
    assert h.learning_rate == [0.45] * 6 and model.learning_rate_ == 0.45


def test_warm_start_continues_the_random_stream(rng):
    """An int random_state seeds the first fit only: warm starts draw fresh batches."""
    X = random_data(rng, 60, (2,) * 6)
    subsets = []
    model = MPSBornMachine(max_bond=2, n_sweeps=1, batch_size=10, warm_start=True, random_state=0)
    model.fit(X)
    stream = model._rng
    for _ in range(3):
        before = stream.bit_generator.state["state"]["state"]
        model.fit(X)
        assert model._rng is stream and stream.bit_generator.state["state"]["state"] != before
        subsets.append(before)
    assert len(set(subsets)) == 3
    cold = MPSBornMachine(max_bond=2, n_sweeps=1, batch_size=10, random_state=0).fit(X)
    assert cold._rng is not stream


@pytest.mark.parametrize("trainer", ["mps", "ttn"])
def test_progress_bar_closes_when_sweeps_stop_early(rng, monkeypatch, trainer):
    """A fit that converges before ``n_sweeps`` (``tol``) still closes its bar, once."""
    from tnkit.ml import history
    from tnkit.ml.ttn_born_machine import TTNBornMachine

    bars = []

    class FakeBar:
        def __init__(self):
            self.updates, self.closed = 0, 0
            bars.append(self)

        def update(self, k):
            self.updates += k

        def set_postfix(self, **kwargs):
            pass

        def close(self):
            self.closed += 1

    monkeypatch.setattr(history, "_progress", lambda total, enabled: FakeBar() if enabled else None)
    X = random_data(rng, 60, (2,) * 6)
    extra = {"n_starts": 1, "n_hops": 0}  # one start, no hops: one bar that stops early
    cls = MPSBornMachine if trainer == "mps" else TTNBornMachine
    model = cls(max_bond=2, n_sweeps=40, tol=10.0, verbose=True, random_state=0, **extra).fit(X)
    assert len(model.history_.nll) < 40
    assert len(bars) == 1 and bars[0].closed == 1 and bars[0].updates == len(model.history_.nll)
    if trainer == "mps":  # several starts: one bar per start and one for the continued start, all closed
        bars.clear()
        model = cls(max_bond=2, n_sweeps=40, tol=10.0, verbose=True, random_state=0, n_starts=3).fit(X)
        assert len(model.history_.nll) < 40
        assert len(bars) >= 7 and all(bar.closed == 1 for bar in bars)  # and one per hop (at least three)
