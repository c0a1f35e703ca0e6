"""MPS Born machines: generative models of discrete data with exact likelihood.

:class:`MPSBornMachine` models ``N`` discrete features (binary pixels, or categorical
values, any number of values per feature) as ``p(x) = |psi(x)|**2 / Z`` with ``psi`` a
matrix product state, complex by default (Han, Wang, Fan, Wang & Zhang, "Unsupervised generative
modeling using matrix product states", PRX 8, 031012 (2018), arXiv:1709.01662). The
fitted state is ``mps_`` (a :class:`tnkit.MPS`: site ``i`` has physical dimension
``n_categories_[i]``, the value of feature ``i``).

Everything is exact: ``log_prob`` by one pass of per-sample products (log-scaled, safe
for hundreds of sites), ``sample`` by perfect sequential sampling (Ferris & Vidal,
arXiv:1201.3974, vectorised over samples), marginals, conditional sampling and
inpainting by the density-matrix environments described below.

Conditional distributions (marginals, conditional sampling, inpainting) are the
engine's :func:`tnkit.mps.sampling.log_marginal` and :func:`tnkit.mps.sampling.complete`
(density environments of the observed values, exact samples of the free ones).

Amplitudes are complex by default
---------------------------------
A real ``psi`` must reproduce the signs of the target's amplitudes, and descent of
``-log psi(x)**2`` cannot change the sign of ``psi`` on a sample: ``psi(x) = 0`` is an
infinite barrier, so a real fit stalls wherever its random start put the zeros (on
12-site, bond-4 Born distributions: 0.3-0.4 nats above the entropy at ``max_bond=4``,
whatever the number of sweeps). With complex amplitudes the zeros have codimension two
and the phases move continuously around them; the same fits reach the finite-sample
floor. A real model stays available (``dtype="float64"``).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import numbers
import time
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted, validate_data

from ..core.rng import as_generator, standard_normal
from ..core.validate import check_int, check_option
from ..io import load_arrays, save_arrays
from ..mps.mps import MatrixProductState
from ..mps.sampling import complete, log_marginal
from .born_gradient import gradient_train
from .born_sweeps import sweep_train
from .history import TrainingHistory
from .trainers import AdamSettings
from .validation import (
    Rule,
    bond,
    boolean,
    check_params,
    fraction,
    integer,
    number,
    option,
    or_auto,
    store_params,
)

__all__ = [
    "MPSBornMachine",
    "BornMachineBase",
    "check_discrete_data",
    "check_training_data",
    "check_dtype",
    "split_rows",
    "bond_stages",
    "largest_within_noise",
    "held_out_rank",
    "search_effort",
    "SEARCH_FEATURE_LIMIT",
    "log_marginal",
    "complete",
]

_KIND = "MPSBornMachine"
_TRAINERS = ("sweep", "gradient")
_DTYPES = ("complex128", "float64")
_INPAINT_METHODS = ("greedy", "sample")
#: Fewest held-out rows for which a fit holds rows out (``validation_fraction``).
_MIN_VALIDATION_ROWS = 50
#: Columns of the MPS machine's ``selection_`` as saved (one row per completed start).
_SELECTION_FIELDS = ("bond", "start", "nll", "validation_nll", "kept")


#: Most features for which ``n_starts="auto"`` and ``n_hops="auto"`` mean three starts and twelve hops.
SEARCH_FEATURE_LIMIT = 32


def search_effort(n_features: int) -> dict[str, int]:
    """What ``n_starts="auto"`` and ``n_hops="auto"`` (the defaults of both Born machines) become.

    Up to :data:`SEARCH_FEATURE_LIMIT` features: three complete starts and twelve basin hops,
    what recovering distributions of 8-16 features at the finite-sample floor takes. With more
    features: one start and no hops. There the sweeps alone reach as good a held-out NLL
    (64 binary features of scikit-learn's digits: 20.90 nats for one start without hops in
    27 CPU seconds, 21.10 for three starts with twelve hops in 218 s; ``docs/generative.md``)
    and each start and hop costs a whole fit of many sites.
    """
    n_features = check_int("n_features", n_features, minimum=1)
    if n_features <= SEARCH_FEATURE_LIMIT:
        return {"n_starts": 3, "n_hops": 12}
    return {"n_starts": 1, "n_hops": 0}


def held_out_rank(loss: np.ndarray) -> tuple[int, float]:
    """Sort key of a fit by its NLL of each held-out row (lower is better).

    A row the fit gives probability zero (NLL ``inf``: a value never seen in training, say)
    makes the mean infinite for every such fit, so fits are ranked first by how many rows
    they give probability zero, then by the mean NLL of the other rows.
    """
    loss = np.asarray(loss, dtype=float)
    finite = np.isfinite(loss)
    return int(np.count_nonzero(~finite)), float(np.mean(loss[finite])) if finite.any() else math.inf


def largest_within_noise(losses: list[np.ndarray]) -> int:
    """Index of the last stage whose held-out NLL is within one standard error of the lowest.

    ``losses[k]`` holds stage ``k``'s NLL of each held-out row. The standard error is that of
    the mean of the paired differences to the lowest stage, so a larger stage is preferred
    unless the held-out rows show it worse (a few hundred rows cannot resolve 0.01 nats,
    and the larger stage is then usually the better one). Stages are ranked by
    :func:`held_out_rank`: one that gives more rows probability zero than the lowest is
    worse, and rows of probability zero are left out of the paired differences.
    """
    ranks = [held_out_rank(loss) for loss in losses]
    low = min(range(len(losses)), key=ranks.__getitem__)
    for k in range(len(losses) - 1, low, -1):
        if ranks[k][0] > ranks[low][0]:
            continue
        both = np.isfinite(losses[k]) & np.isfinite(losses[low])
        d = losses[k][both] - losses[low][both]
        if len(d) < 2 or float(np.mean(d)) <= float(np.std(d, ddof=1)) / math.sqrt(len(d)):
            return k
    return low


def bond_stages(start: int, max_bond: int) -> list[int]:
    """Bonds of the growth stages from ``start``: ``b -> b + max(1, b // 4)``, ending at ``max_bond``."""
    stages = [min(start, max_bond)]
    while stages[-1] < max_bond:
        stages.append(min(max_bond, stages[-1] + max(1, stages[-1] // 4)))
    return stages


def split_rows(
    X: np.ndarray, fraction: float | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(fitting rows, held-out rows)``: a random ``fraction`` of the rows of ``X`` held out.

    Nothing is held out (``None``) when ``fraction`` is ``None`` or 0, or gives fewer than
    ``_MIN_VALIDATION_ROWS`` rows; the random stream is used only when rows are held out.
    """
    n_held = int(math.floor((fraction or 0.0) * len(X)))
    if n_held < _MIN_VALIDATION_ROWS:
        return X, None
    order = rng.permutation(len(X))
    return X[order[n_held:]], X[order[:n_held]]


def check_discrete_data(
    name: str, X: object, n_categories: np.ndarray | None = None, *, min_samples: int = 0, min_features: int = 1
) -> np.ndarray:
    """Validate discrete data: an ``(n, n_features)`` array of non-negative integers.

    scikit-learn's :func:`~sklearn.utils.check_array` runs first (2-d, no sparse
    matrices, no NaN or infinity, no complex or non-numeric entries, the minimum
    numbers of rows and columns, with its standard messages), then the checks of
    discrete values.

    Parameters
    ----------
    name : str
        Argument name for messages.
    X : array_like
        Integer values (floats that are whole numbers and booleans are accepted).
    n_categories : numpy.ndarray of int, shape (n_features,), optional
        If given, ``X[:, i]`` must lie in ``[0, n_categories[i])``.
    min_samples, min_features : int
        Fewest rows and columns accepted.

    Returns
    -------
    numpy.ndarray of intp, shape (n, n_features)
    """
    if np.ndim(X) != 2 and not hasattr(X, "tocsr"):
        raise ValueError(f"`{name}` must be a 2-d array (n_samples, n_features), got shape {np.shape(X)}.")
    if np.asarray(X).dtype.kind == "b":
        X = np.asarray(X).astype(np.intp)
    try:
        arr = check_array(
            X, accept_sparse=False, dtype="numeric", ensure_min_samples=min_samples,
            ensure_min_features=min_features, input_name=name,
        )
    except TypeError as exc:  # sparse input
        raise TypeError(f"`{name}`: {exc}") from exc
    if arr.dtype.kind == "f":
        if not np.all(arr == np.round(arr)):
            raise ValueError(f"`{name}` must hold whole numbers (discrete values), got non-integer floats.")
        arr = arr.astype(np.intp)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"`{name}` must hold integers, got dtype {arr.dtype}.")
    if arr.size and arr.min() < 0:
        raise ValueError(f"Negative values in data passed to `{name}`: it must hold non-negative integers, found {arr.min()}.")
    if n_categories is not None:
        if arr.shape[1] != len(n_categories):
            raise ValueError(f"`{name}` must have {len(n_categories)} features, got {arr.shape[1]}.")
        bad = arr >= n_categories[None, :]
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"`{name}`[{row}, {col}] = {arr[row, col]} is not a value of feature {col} "
                f"(the model knows values 0..{n_categories[col] - 1})."
            )
    return arr.astype(np.intp, copy=False)


def check_training_data(X: object, n_categories: np.ndarray | None = None) -> np.ndarray:
    """:func:`check_discrete_data` for ``fit``: also at least one row and two features."""
    return check_discrete_data("X", X, n_categories, min_samples=1, min_features=2)


def check_dtype(dtype: object, name: str = "dtype") -> str:
    """The amplitude type of a Born machine: ``"complex128"`` or ``"float64"`` (names or numpy dtypes)."""
    try:
        name_of = np.dtype(dtype).name
    except TypeError:
        name_of = repr(dtype)
    check_option(name, name_of, _DTYPES)
    return name_of


def _check_mask(name: str, mask: object, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask of observed entries, ``(n_features,)`` or ``(n, n_features)``, broadcast."""
    arr = np.asarray(mask)
    if arr.dtype != bool:
        raise TypeError(f"`{name}` must be a boolean array (True = observed), got dtype {arr.dtype}.")
    if arr.shape not in {(shape[1],), shape}:
        raise ValueError(f"`{name}` must have shape ({shape[1]},) or {shape}, got {arr.shape}.")
    return np.broadcast_to(arr, shape)


def perturbed_tensors(tensors: Any, size: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Each tensor with Gaussian noise added, of norm about ``size`` times the tensor's own.

    Complex tensors get complex noise (independent real and imaginary parts). Shared by
    the basin hopping of the MPS and tree Born machines.
    """
    out = []
    for t in tensors:
        noise = standard_normal(rng, t.shape, is_complex=np.iscomplexobj(t))
        out.append(t + size * np.linalg.norm(t) / math.sqrt(t.size) * noise)
    return out


def perturbed(mps: MatrixProductState, size: float, rng: np.random.Generator) -> MatrixProductState:
    """``mps`` with Gaussian noise added to every tensor, of norm about ``size`` times the tensor's.

    Complex tensors get complex noise (independent real and imaginary parts).
    """
    return MatrixProductState(perturbed_tensors(mps.tensors, size, rng))


# --------------------------------------------------------------------------- functional core



# --------------------------------------------------------------------------- estimator


class BornMachineBase(DensityMixin, BaseEstimator):
    """What the MPS and TTN Born machines share: scores, categories and the saved metadata.

    Subclasses define ``log_prob``, ``_data`` (validated integer rows), ``_complete`` and
    ``_log_marginal`` (the conditionals on validated rows and masks), and keep
    ``n_categories`` (parameter), ``n_categories_`` and ``history_`` (a
    :class:`~tnkit.ml.history.TrainingHistory`).
    """

    def __sklearn_tags__(self) -> Any:
        """scikit-learn tags: the input is categorical (non-negative integer codes), no NaN.

        With these tags scikit-learn's estimator checks feed integer codes instead of
        continuous data, and expect the messages raised here for negative values.
        """
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True
        tags.input_tags.positive_only = True
        tags.input_tags.allow_nan = False
        return tags

    def _parameter_rules(self) -> dict[str, Rule]:
        """Rules of the parameters both Born machines have (subclasses merge theirs over these)."""
        return {
            "trainer": option(_TRAINERS),
            "dtype": lambda name, value: check_dtype(value, name),
            "learning_rate": number(),
            "normalized_gradient": boolean(),
            "n_sweeps": integer(minimum=1),
            "tol": number(positive=False, optional=True),
            "n_descent_steps": integer(minimum=1),
            "n_epochs": integer(minimum=1),
            "batch_size": integer(minimum=1, optional=True),
            "n_starts": or_auto(integer(minimum=1)),
            "start_sweeps": integer(minimum=1, optional=True),
            "n_hops": or_auto(integer(minimum=0)),
            "hop_size": number(),
            "hop_sweeps": integer(minimum=1),
        }

    def _checked_params(self) -> dict[str, Any]:
        """The parameters named by :meth:`_parameter_rules`, checked before any work, as plain values."""
        rules = self._parameter_rules()
        check_params(self, rules)
        params = {name: getattr(self, name) for name in rules}
        params["dtype"] = check_dtype(self.dtype)
        params["learning_rate"] = float(self.learning_rate)
        params["tol"] = None if self.tol is None else float(self.tol)
        return params

    def _validated(self, X: Any) -> np.ndarray:
        """Rows for a fitted model: :func:`check_discrete_data`, scikit-learn's feature-count check, the value ranges."""
        arr = check_discrete_data("X", X)
        validate_data(self, arr, reset=False, skip_check_array=True)
        return check_discrete_data("X", arr, self.n_categories_)

    def score_samples(self, X: Any) -> np.ndarray:
        """Same as :meth:`log_prob` (scikit-learn's name)."""
        return self.log_prob(X)

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-likelihood of the rows of ``X`` (higher is better; ``-score`` is the NLL)."""
        return float(np.mean(self.log_prob(X)))

    def _categories(self, X: np.ndarray) -> np.ndarray:
        """Values per feature: from ``n_categories``, else ``max(X[:, i]) + 1`` (at least 2)."""
        n_features = X.shape[1]
        if self.n_categories is None:
            return np.maximum(X.max(axis=0) + 1, 2).astype(np.intp)
        if np.ndim(self.n_categories) == 0:
            d = check_int("n_categories", self.n_categories, minimum=2)
            return np.full(n_features, d, dtype=np.intp)
        dims = [check_int(f"n_categories[{i}]", d, minimum=2) for i, d in enumerate(self.n_categories)]
        if len(dims) != n_features:
            raise ValueError(f"`n_categories` must give {n_features} values (one per feature), got {len(dims)}.")
        return np.asarray(dims, dtype=np.intp)

    def _generator(self, warm: bool) -> np.random.Generator:
        """The random stream of a fit: a warm start continues the previous fit's stream.

        (Re-seeding from an int ``random_state`` on every warm-start fit would redraw
        the same ``batch_size`` subset each time.)
        """
        if not (warm and hasattr(self, "_rng")):
            self._rng = as_generator(self.random_state)
        return self._rng

    def _start_fit(self, X: Any, fitted_attr: str) -> tuple[dict[str, Any], bool, np.ndarray, np.random.Generator]:
        """Checked parameters, warm-start flag, validated data and random stream of a fit.

        A fresh fit (no ``fitted_attr`` yet, or ``warm_start`` off) also sets
        ``n_categories_``, ``n_features_in_`` and an empty ``history_``.
        """
        params = self._checked_params()
        warm = self.warm_start and hasattr(self, fitted_attr)
        X = check_training_data(X, self.n_categories_ if warm else None)
        rng = self._generator(warm)
        if not warm:
            self.n_categories_ = self._categories(X)
            X = check_discrete_data("X", X, self.n_categories_)
            self.n_features_in_ = X.shape[1]
            self.history_ = TrainingHistory()
        for name, value in search_effort(X.shape[1]).items():
            if params[name] == "auto":
                params[name] = value
        return params, warm, X, rng

    def conditional_sample(self, X: Any, observed: Any, random_state: Any = None) -> np.ndarray:
        """Exact samples of the unobserved entries given the observed ones, one per row.

        Parameters
        ----------
        X : array_like of int, shape (n, n_features)
            Values of the observed entries (the others are ignored, any valid value).
        observed : array_like of bool, shape (n_features,) or (n, n_features)
            True where the value in ``X`` is given.
        random_state : None, int or numpy Generator

        Returns
        -------
        numpy.ndarray of int, shape (n, n_features)
            ``X`` with the unobserved entries drawn from ``p(x_free | x_observed)``.
        """
        X, observed = self._conditioned(X, observed)
        return self._complete(X, observed, as_generator(random_state), greedy=False)

    def inpaint(self, X: Any, observed: Any, *, method: str = "greedy", random_state: Any = None) -> np.ndarray:
        """Complete the unobserved entries of each row.

        Parameters
        ----------
        X, observed :
            As in :meth:`conditional_sample`.
        method : {"greedy", "sample"}
            ``"greedy"``: feature by feature (an MPS from left to right, a tree in
            depth-first leaf order), the most likely value under the exact conditional
            given the observed entries and the values chosen so far (the exact most
            likely completion is intractable in general);
            ``"sample"``: a draw from ``p(x_free | x_observed)``.
        random_state : None, int or numpy Generator
            For ``method="sample"``.

        Returns
        -------
        numpy.ndarray of int, shape (n, n_features)
        """
        check_option("method", method, _INPAINT_METHODS)
        X, observed = self._conditioned(X, observed)
        return self._complete(X, observed, as_generator(random_state), greedy=method == "greedy")

    def log_marginal(self, X: Any, observed: Any) -> np.ndarray:
        """``log p(x_observed)`` of each row: the marginal of its observed entries.

        Parameters
        ----------
        X : array_like of int, shape (n, n_features)
        observed : array_like of bool, shape (n_features,) or (n, n_features)

        Returns
        -------
        numpy.ndarray, shape (n,)
        """
        X, observed = self._conditioned(X, observed)
        return self._log_marginal(X, observed)

    def _conditioned(self, X: Any, observed: Any) -> tuple[np.ndarray, np.ndarray]:
        X = self._data(X)
        return X, np.asarray(_check_mask("observed", observed, X.shape))

    def _json_params(self) -> dict[str, Any]:
        """``get_params()`` as plain JSON values (a Generator ``random_state`` is not kept)."""
        params = dict(self.get_params())
        if not (params["random_state"] is None or isinstance(params["random_state"], numbers.Integral)):
            params["random_state"] = None
        if params["n_categories"] is not None and np.ndim(params["n_categories"]) > 0:
            params["n_categories"] = [int(d) for d in params["n_categories"]]
        return params

    def _common_meta(self) -> dict[str, Any]:
        """Metadata arrays every saved Born machine holds: parameters, categories, history."""
        h = self.history_
        return {
            "params_json": json.dumps(self._json_params()),
            "n_categories": self.n_categories_,
            "history_nll": np.asarray(h.nll, dtype=float),
            "history_max_bond": np.asarray(h.max_bond, dtype=np.int64),
            "history_seconds": np.asarray(h.seconds, dtype=float),
            "history_learning_rate": np.asarray(h.learning_rate, dtype=float),
        }

    @staticmethod
    def _read_common_meta(meta: dict[str, np.ndarray]) -> tuple[dict[str, Any], np.ndarray, Any]:
        """``(params, n_categories_, history_)`` from :meth:`_common_meta`'s arrays (KeyError, ValueError, TypeError if malformed)."""
        params = json.loads(str(meta["params_json"]))
        n_categories = np.asarray(meta["n_categories"], dtype=np.intp)
        history = TrainingHistory(
            [float(v) for v in meta["history_nll"]],
            [int(v) for v in meta["history_max_bond"]],
            [float(v) for v in meta["history_seconds"]],
            [float(v) for v in meta["history_learning_rate"]],
        )
        return params, n_categories, history

    # ------------------------------------------------------------------ multi-start fits and basin hopping
    # Shared by both Born machines. ``sweep(state, n_sweeps=, history=, one_site=)`` returns
    # ``(state, history)``; subclasses give ``_initial_state(rng, params)``,
    # ``_perturbed(state, size, rng)``, ``_largest_bond(state)`` and ``_hop_rate(params)``.

    def _sweep_fit(
        self, sweep: Any, rng: np.random.Generator, params: dict[str, Any], start: Any,
        history: TrainingHistory, n_sweeps: int, *, hops: bool,
    ) -> tuple[Any, TrainingHistory]:
        """``n_sweeps`` sweeps from ``start``, then (``hops``, and ``n_sweeps >= hop_sweeps``) basin hopping."""
        state, history = sweep(start, n_sweeps=n_sweeps, history=history)
        if hops and params["n_sweeps"] >= params["hop_sweeps"]:
            state = self._hop(sweep, rng, params, state, history)
        return state, history

    def _best_start(
        self, sweep: Any, rng: np.random.Generator, params: dict[str, Any], first: Any,
        prepare: Any = None, score: Any = None,
    ) -> tuple[Any, TrainingHistory]:
        """Fits from ``n_starts`` random starts; the lowest training NLL (or ``score``) wins.

        With ``start_sweeps=None`` each start is fitted completely (sweeps and hops); with an
        int, each gets ``start_sweeps`` sweeps (MPS: two-site only) and only the best is continued.
        ``first`` is the first start; the others come from ``_initial_state``. ``prepare``
        (``start -> state``) runs on each start before its sweeps (the tree's bond growth).
        ``score`` (``(state, history) -> float`` or a tuple compared in order, lower is better;
        e.g. :func:`held_out_rank` of the held-out rows) is
        called once on every completed fit and chooses among them instead of the training NLL.
        """
        key = score if score is not None else (lambda state, history: history.nll[-1])
        starts = [first] + [self._initial_state(rng, params) for _ in range(params["n_starts"] - 1)]
        if prepare is not None:
            starts = [prepare(s) for s in starts]
        if params["start_sweeps"] is None:
            runs = [self._sweep_fit(sweep, rng, params, s, TrainingHistory(), params["n_sweeps"], hops=True)
                    for s in starts]
            scores = [key(*run) for run in runs]
            return runs[min(range(len(runs)), key=scores.__getitem__)]
        if params["n_sweeps"] <= params["start_sweeps"]:
            run = self._sweep_fit(sweep, rng, params, starts[0], TrainingHistory(), params["n_sweeps"],
                                  hops=True)
            key(*run)
            return run
        runs = [
            sweep(s, n_sweeps=params["start_sweeps"], history=TrainingHistory(), one_site=False)
            for s in starts
        ]
        state, history = min(runs, key=lambda run: run[1].nll[-1])
        run = self._sweep_fit(sweep, rng, params, state, history, params["n_sweeps"] - params["start_sweeps"],
                              hops=True)
        key(*run)
        return run

    def _hop(
        self, sweep: Any, rng: np.random.Generator, params: dict[str, Any], state: Any,
        history: TrainingHistory,
    ) -> Any:
        """Basin hopping: ``n_hops`` times, perturb the fitted state, sweep it again, keep it if it fits better.

        Each tensor gets Gaussian noise of norm ``hop_size`` times its own (``_perturbed``), then
        ``hop_sweeps`` sweeps (MPS: two-site, then one-site) descend from there; the result
        replaces ``state`` only if its training NLL is lower. Each hop adds one entry to
        ``history`` (in place): the training NLL of the state kept after it (so the history never rises).
        All ``n_hops`` hops run: a fit can reject several hops in a row and still escape to a
        better minimum later. Returns the state kept.
        """
        for _ in range(params["n_hops"]):
            tick = time.perf_counter()
            trial = self._perturbed(state, params["hop_size"], rng)
            candidate, run = sweep(trial, n_sweeps=params["hop_sweeps"], history=TrainingHistory())
            gain = history.nll[-1] - run.nll[-1]
            if gain > 0:
                state = candidate
            history.append(history.nll[-1] - max(gain, 0.0), self._largest_bond(state),
                           time.perf_counter() - tick, self._hop_rate(params))
        return state


class MPSBornMachine(BornMachineBase):
    """Generative model ``p(x) = |psi(x)|**2 / Z`` of discrete data with an MPS ``psi``.

    Parameters
    ----------
    max_bond : int or None, default 10
        Largest bond dimension; the two-site splits grow bonds up to it where the
        data need it.
    cutoff : float, default 1e-20
        Largest relative discarded weight ``sum(s[k:]**2) / sum(s**2)`` per split (the
        engine's rule, :mod:`tnkit.core.linalg`); the default drops only numerical
        zeros, so ``max_bond`` sets the capacity. Han et al.'s code instead drops
        singular values below ``cutoff * s[0]``; theirs ``c`` is about ours ``c**2``.
        A larger cutoff starves the bonds: on MNIST at max bond 100, ``cutoff=1e-7``
        kept the training NLL at 82 where ``cutoff=0`` reached 43 in 9 sweeps.
    learning_rate : float, default 0.05
        Step of the gradient updates (sweeps: on the merged tensor; gradient
        trainer: Adam's step).
    n_sweeps : int, default 50
        Most sweeps per ``fit`` (trainer ``"sweep"``); a sweep passes once over the
        ``N - 1`` pairs in one direction and the direction alternates. Full-batch fits
        switch to one-site sweeps (no truncation) once the two-site sweeps have converged
        or used half of the sweeps, and stop once three one-site sweeps in a row gain
        less than ``tol`` each.
    tol : float or None, default 2e-5
        Sweeps stop when each of three in a row lowers the training NLL by less than
        this (nats); ``None`` runs all ``n_sweeps``. Full-batch sweeps only
        (``batch_size=None``). The NLL often creeps by about 1e-4 a sweep for a while
        before it falls again: with ``tol=1e-4`` and two-site sweeps only, a 16-site,
        bond-4 fit stopped after 22 sweeps 0.028 nats above the floor, with 2e-5 it
        went on to 0.015.
    n_descent_steps : int, default 10
        Gradient steps on each merged pair before it is split.
    learning_rate_decay : float, default 1.0
        Sweeps: after a sweep that raised the training NLL, the learning rate is
        multiplied by this (the authors' code uses 0.2); 1 keeps it fixed. A warm start
        continues with the decayed rate, ``learning_rate_``. On MNIST at bond 10 the
        truncation makes the NLL rise by ~0.001 now and then, and decaying there cost
        0.15 nats after 200 sweeps, hence the default.
    normalized_gradient : bool, default False
        Sweeps only: scale small gradients up to half-norm ``size**0.25`` (the
        "norm0.25" mode of the authors' later code), which escapes the slow plateaus
        of large data sets; use with a small ``learning_rate`` (about 0.005) and
        ``n_descent_steps=1``.
    init_bond : int, default 2
        Bond dimension of the random starting state (capped by ``max_bond``).
    n_starts : int or "auto", default "auto"
        ``"auto"``: 3 up to :data:`SEARCH_FEATURE_LIMIT` (32) features, 1 above
        (:func:`search_effort`). Sweeps (full batch, fresh fit): fits from this many random
        starts; the one with the lowest held-out NLL (``validation_fraction``; without held-out rows, the lowest
        training NLL) is kept. Fits from different starts end in different
        local minima, and choosing after the complete fits compares the minima
        themselves, not how fast each start descends in its first sweeps (see
        ``docs/generative.md``).
    start_sweeps : int or None, default None
        ``None``: every start gets the complete fit (sweeps, then basin hopping). An int:
        each start gets this many two-site sweeps, and only the best is continued (counted
        in ``n_sweeps``).
    n_hops : int or "auto", default "auto"
        ``"auto"``: 12 up to :data:`SEARCH_FEATURE_LIMIT` (32) features, 0 above
        (:func:`search_effort`). Sweeps (full batch): after the sweeps, this many rounds of
        basin hopping. The fitted state gets Gaussian noise of relative size ``hop_size`` on every tensor,
        ``hop_sweeps`` sweeps descend from there, and the result is kept if its
        training NLL is lower. Fits of large bond stop in local minima that more sweeps
        do not leave (16 features at bond 8: the NLL creeps by 1e-4 nats a sweep);
        a hop moves to a better one (see ``docs/generative.md``). Every start makes all
        ``n_hops`` hops: escapes are rare and irregular, so a run of rejected hops says
        little about the next one. 0 turns hopping off, and a fit
        allowed fewer ``n_sweeps`` than ``hop_sweeps`` does not hop.
    hop_size : float, default 0.3
        Norm of each tensor's noise relative to the tensor's own.
    hop_sweeps : int, default 20
        Sweeps per hop (two-site until they converge or use half, then one-site).
    validation_fraction : float or None, default 0.1
        Sweeps (full batch, fresh fit): share of the rows held out to choose the fit. The
        starts are fitted on the other rows and compared by their held-out NLL, at
        ``max_bond`` and then at smaller bonds (the stages ``b -> b + max(1, b // 4)``
        from ``init_bond``, taken downwards) while a smaller bond is better by more than
        one standard error; the chosen fit is then swept on every row, its largest bond
        capped at the chosen one (``selection_`` lists every start). On few samples the
        lowest training NLL is not the best model: on 5,000 samples of 14-feature, bond-6
        Born distributions the choice by training NLL gave KL 0.134 and 0.139 nats on two
        data sets, the held-out choice 0.068-0.139 on five (three within the finite-sample
        floor plus 0.02; see ``docs/generative.md``).
        ``None``, 0, or fewer than 50 held-out rows: nothing is held out and the lowest
        training NLL at ``max_bond`` wins.
    trainer : {"sweep", "gradient"}, default "sweep"
        Two-site sweeps (bond dimensions adapt), or minibatch Adam on all tensors at
        once with the bond fixed at ``max_bond``.
    n_epochs : int, default 10
        Epochs of the gradient trainer.
    batch_size : int or None, default None
        Gradient trainer: the minibatch size (``None``: 100). Sweeps: train each sweep
        on a fresh random subset of this many samples (``None``: all), which bounds
        the memory of the environments for large data sets.
    n_categories : int, sequence of int or None, default None
        Number of values of each feature (one int for all); ``None`` takes
        ``max(X[:, i]) + 1`` (at least 2) from the training data.
    warm_start : bool, default False
        Continue from the fitted ``mps_`` on the next ``fit``.
    random_state : None, int or numpy Generator
        Seed of the starting state and of the minibatch shuffles.
    verbose : bool, default False
        Show a tqdm progress bar with the NLL per sweep (scikit-learn's name).
    dtype : {"complex128", "float64"}, default "complex128"
        Type of the amplitudes. Complex amplitudes are the default because a real
        ``psi`` cannot move its zeros across the samples by descent (see the module
        docstring); ``"float64"`` halves the memory and time per sweep.

    Attributes
    ----------
    mps_ : MatrixProductState
        The trained, normalised state; ``mps_[i]`` has shape ``(D_i, n_categories_[i], D_{i+1})``.
    n_categories_ : numpy.ndarray of int, shape ``(n_features_in_,)``
    n_features_in_ : int
    history_ : tnkit.ml.history.TrainingHistory
        NLL (nats), largest bond, seconds and learning rate per sweep or epoch, over all fits.
        With held-out rows (``validation_fraction``) a fresh fit records the final sweeps on
        every row; the fits it chose from are summarised in ``selection_``.
    learning_rate_ : float
        The sweeps' learning rate after the decays (used by a warm start).
    selection_ : list of dict
        One row per completed start of a fit with held-out rows (``validation_fraction``):
        ``bond`` (its largest bond), ``start`` (index within its bond level), ``nll`` (its
        training NLL on the fitting rows), ``validation_nll`` (on the held-out rows) and
        ``kept`` (the fit then swept on every row). Empty when nothing was held out.

    Examples
    --------
    >>> from tnkit.datasets import bars_and_stripes
    >>> from tnkit.ml import MPSBornMachine
    >>> X = bars_and_stripes(3)                     # 14 patterns on 3x3
    >>> model = MPSBornMachine(max_bond=16, init_bond=8, n_sweeps=2, random_state=0).fit(X)
    >>> round(-model.score(X), 3)                   # ln 14 = 2.639: the data distribution
    2.639
    """

    def __init__(
        self,
        max_bond: int | None = 10,
        cutoff: float = 1e-20,
        learning_rate: float = 0.05,
        n_sweeps: int = 50,
        tol: float | None = 2e-5,
        n_descent_steps: int = 10,
        learning_rate_decay: float = 1.0,
        normalized_gradient: bool = False,
        init_bond: int = 2,
        n_starts: int | str = "auto",
        start_sweeps: int | None = None,
        n_hops: int | str = "auto",
        hop_size: float = 0.3,
        hop_sweeps: int = 20,
        validation_fraction: float | None = 0.1,
        trainer: str = "sweep",
        n_epochs: int = 10,
        batch_size: int | None = None,
        n_categories: Any = None,
        warm_start: bool = False,
        random_state: Any = None,
        verbose: bool = False,
        dtype: Any = "complex128",
    ) -> None:
        store_params(self, locals())

    # ------------------------------------------------------------------ fitting

    def fit(self, X: Any, y: Any = None) -> MPSBornMachine:
        """Fit the Born machine to the rows of ``X`` by minimising the NLL.

        Parameters
        ----------
        X : array_like of int, shape (n_samples, n_features)
            Discrete data, ``0 <= X[:, i] < n_categories[i]``; at least 2 features.
        y : ignored

        Returns
        -------
        self
        """
        params, warm, X, rng = self._start_fit(X, "mps_")
        if not warm:
            self.mps_ = self._initial_state(rng, params)
            self.learning_rate_ = params["learning_rate"]
            self.selection_ = []
        if params["trainer"] == "sweep":
            def make_sweep(rows: np.ndarray, max_bond: int | None) -> Any:
                return functools.partial(
                    sweep_train, X=rows, learning_rate=self.learning_rate_,
                    learning_rate_decay=params["learning_rate_decay"],
                    n_descent_steps=params["n_descent_steps"], max_bond=max_bond,
                    cutoff=params["cutoff"], normalized_gradient=bool(self.normalized_gradient),
                    batch_size=params["batch_size"], rng=rng, progress=self.verbose, tol=params["tol"],
                )

            full_batch = params["batch_size"] is None or params["batch_size"] >= len(X)
            fit_rows, held = (split_rows(X, params["validation_fraction"], rng) if full_batch and not warm
                              else (X, None))
            if held is not None:
                self.mps_, self.history_ = self._selected_fit(make_sweep, rng, params, X, fit_rows, held)
            elif not warm and full_batch and params["n_starts"] > 1:
                self.mps_, self.history_ = self._best_start(make_sweep(X, params["max_bond"]), rng, params,
                                                            self.mps_)
            else:
                self.mps_, self.history_ = self._sweep_fit(
                    make_sweep(X, params["max_bond"]), rng, params, self.mps_, self.history_,
                    params["n_sweeps"], hops=full_batch,
                )
            self.learning_rate_ = self._decayed_rate(params)
        else:
            settings = AdamSettings(n_epochs=params["n_epochs"], batch_size=params["batch_size"] or 100,
                                    learning_rate=params["learning_rate"])
            self.mps_, self.history_ = gradient_train(self.mps_, X, settings, rng=rng, progress=self.verbose,
                                                      history=self.history_)
        return self

    def _selected_fit(
        self, make_sweep: Any, rng: np.random.Generator, params: dict[str, Any], X: np.ndarray,
        fit_rows: np.ndarray, held: np.ndarray,
    ) -> tuple[MatrixProductState, TrainingHistory]:
        """The fit chosen on held-out rows, then swept on every row (``validation_fraction``).

        Bond levels go down from ``max_bond`` through the growth stages
        (:func:`bond_stages` from ``init_bond``, reversed). At each level the
        ``n_starts`` complete fits (sweeps and hops on ``fit_rows``) are compared by
        their NLL on ``held`` and the best is the level's. The level kept is the largest
        bond whose best fit is within one standard error of the lowest held-out NLL
        (:func:`largest_within_noise`); levels stop going down once the newest one is
        not the kept one. The kept fit is then swept on all of ``X`` (no hops) until it
        converges; the history returned is that of these sweeps (the NLL of every row).
        Every completed start is a row of ``selection_``.
        """
        top = params["max_bond"]
        levels = [top] if top is None else bond_stages(min(params["init_bond"], top), top)[::-1]
        fits, losses, rows, row_losses, ranks = [], [], [], [], []

        def score(state: MatrixProductState, history: TrainingHistory) -> tuple[int, float]:
            row_losses.append(-self._state_log_prob(state, held))
            rows.append(dict(bond=max(state.bond_dims), start=0, nll=history.nll[-1],
                             validation_nll=float(np.mean(row_losses[-1])), kept=False))
            ranks.append(held_out_rank(row_losses[-1]))
            return ranks[-1]

        for cap in levels:
            level = {**params, "max_bond": cap}
            first = len(rows)
            start = self._initial_state(rng, level)
            state, _ = self._best_start(make_sweep(fit_rows, cap), rng, level, start, score=score)
            for k, row in enumerate(rows[first:]):
                row["start"] = k
            best = min(range(first, len(rows)), key=ranks.__getitem__)
            fits.append((cap, state, best))
            losses.append(row_losses[best])
            kept = len(losses) - 1 - largest_within_noise(losses[::-1])
            if kept != len(losses) - 1:
                break
        cap, state, row = fits[kept]
        rows[row]["kept"] = True
        self.selection_ = rows
        return make_sweep(X, cap)(state, n_sweeps=params["n_sweeps"], history=TrainingHistory())

    def _state_log_prob(self, state: MatrixProductState, X: np.ndarray) -> np.ndarray:
        """``log p(x)`` of validated rows under ``state`` (not necessarily the fitted ``mps_``)."""
        _, log_abs = state.log_amplitudes(X)
        return 2.0 * log_abs - 2.0 * state.log_norm()

    def _parameter_rules(self) -> dict[str, Rule]:
        return {
            **super()._parameter_rules(),
            "max_bond": bond(),
            "cutoff": fraction(),
            "validation_fraction": number(positive=False, maximum=0.9, optional=True),
            "learning_rate_decay": number(maximum=1.0),
            "init_bond": integer(minimum=1),
        }

    def _json_params(self) -> dict[str, Any]:
        params = super()._json_params()
        params["dtype"] = np.dtype(params["dtype"]).name
        return params

    def _perturbed(self, state: MatrixProductState, size: float, rng: np.random.Generator) -> MatrixProductState:
        return perturbed(state, size, rng)

    def _largest_bond(self, state: MatrixProductState) -> int:
        return max(state.bond_dims)

    def _hop_rate(self, params: dict[str, Any]) -> float:
        return self.learning_rate_

    def _decayed_rate(self, params: dict[str, Any]) -> float:
        """The rate for the next sweep: the last one used, decayed if that sweep raised the NLL."""
        h = self.history_
        rate = h.learning_rate[-1]
        if len(h.nll) >= 2 and h.nll[-1] > h.nll[-2] and params["batch_size"] is None:
            rate *= params["learning_rate_decay"]
        return rate

    def _initial_state(self, rng: np.random.Generator, params: dict[str, Any]) -> MatrixProductState:
        bond = params["init_bond"] if params["trainer"] == "sweep" else (params["max_bond"] or params["init_bond"])
        if params["max_bond"] is not None:
            bond = min(bond, params["max_bond"])
        return MatrixProductState.random(
            self.n_features_in_, bond, phys_dim=[int(d) for d in self.n_categories_], seed=rng,
            dtype=params["dtype"],
        )

    # ------------------------------------------------------------------ likelihood

    def _data(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "mps_")
        return self._validated(X)

    def log_prob(self, X: Any) -> np.ndarray:
        """``log p(x)`` (nats) of each row of ``X``; exact, safe for long chains.

        Returns
        -------
        numpy.ndarray, shape (n_samples,)
            ``-inf`` for rows of probability zero.
        """
        return self._state_log_prob(self.mps_, self._data(X))

    # ------------------------------------------------------------------ sampling

    def sample(self, n_samples: int = 1, random_state: Any = None) -> np.ndarray:
        """Exact independent samples (perfect sampling, all at once).

        Returns
        -------
        numpy.ndarray of int, shape (n_samples, n_features_in_)
        """
        check_is_fitted(self, "mps_")
        return self.mps_.sample(n_samples, seed=as_generator(random_state))

    def _complete(self, X: np.ndarray, observed: np.ndarray, rng: np.random.Generator, greedy: bool) -> np.ndarray:
        out, _ = complete(self.mps_, X, observed, rng=rng, greedy=greedy)
        return out

    def _log_marginal(self, X: np.ndarray, observed: np.ndarray) -> np.ndarray:
        return log_marginal(self.mps_, X, observed)

    def marginal(self, sites: Any, *, max_size: int = 2**16) -> np.ndarray:
        """The joint marginal distribution of the features ``sites``.

        Parameters
        ----------
        sites : int or sequence of int
            Distinct feature indices, in the order of the result's axes.
        max_size : int
            Largest number of entries of the table.

        Returns
        -------
        numpy.ndarray, shape (n_categories_[sites[0]], n_categories_[sites[1]], ...)
            ``P[v_0, v_1, ...] = p(x_{sites[0]} = v_0, x_{sites[1]} = v_1, ...)``; sums to one.
        """
        check_is_fitted(self, "mps_")
        sites = [sites] if np.ndim(sites) == 0 else list(sites)
        n = self.n_features_in_
        sites = [check_int(f"sites[{k}]", s) for k, s in enumerate(sites)]
        sites = [s + n if s < 0 else s for s in sites]
        if not sites or any(not 0 <= s < n for s in sites) or len(set(sites)) != len(sites):
            raise ValueError(f"`sites` must be distinct features in [0, {n}), got {sites}.")
        dims = tuple(int(self.n_categories_[s]) for s in sites)
        size = math.prod(dims)
        if size > max_size:
            raise ValueError(f"the marginal of {len(sites)} features has {size} entries, above `max_size`={max_size}.")
        X = np.zeros((size, n), dtype=np.intp)
        X[:, sites] = np.array(list(itertools.product(*(range(d) for d in dims))), dtype=np.intp)
        observed = np.zeros((size, n), dtype=bool)
        observed[:, sites] = True
        return np.exp(log_marginal(self.mps_, X, observed)).reshape(dims)

    # ------------------------------------------------------------------ persistence

    def save(self, path: Any) -> Any:
        """Write the fitted model to ``.npz`` atomically (no pickle); return the path written."""
        check_is_fitted(self, "mps_")
        meta = {
            **self._common_meta(),
            "learning_rate_": np.asarray(getattr(self, "learning_rate_", self.learning_rate), dtype=float),
            "canonical_range": np.asarray(self.mps_.canonical_range, dtype=np.int64),
            "selection": np.array(
                [[float(row[f]) for f in _SELECTION_FIELDS] for row in getattr(self, "selection_", [])],
                dtype=float,
            ).reshape(-1, len(_SELECTION_FIELDS)),
        }
        return save_arrays(path, _KIND, list(self.mps_.tensors), meta)

    @classmethod
    def load(cls, path: Any) -> MPSBornMachine:
        """Read a model written by :meth:`save`; never executes code from the file."""
        from ..errors import SchemaError

        tensors, meta = load_arrays(path, _KIND)
        try:
            params, n_categories, history = cls._read_common_meta(meta)
            learning_rate_ = float(meta["learning_rate_"])
            selection = [
                {f: (bool(v) if f == "kept" else float(v) if f in ("nll", "validation_nll") else int(v))
                 for f, v in zip(_SELECTION_FIELDS, row, strict=True)}
                for row in np.asarray(meta.get("selection", np.zeros((0, len(_SELECTION_FIELDS)))),
                                      dtype=float)
            ]
        except (KeyError, ValueError, TypeError) as exc:
            raise SchemaError(f"{str(path)!r} is not a valid {_KIND} file: {exc}") from exc
        model = cls(**params)
        model.mps_ = MatrixProductState(tensors)
        claimed = meta.get("canonical_range")
        if claimed is not None and claimed.shape == (2,) and claimed.dtype.kind in "iu":
            model.mps_.adopt_canonical_range(int(claimed[0]), int(claimed[1]))
        if tuple(model.mps_.phys_dims) != tuple(int(d) for d in n_categories):
            raise SchemaError(f"{str(path)!r}: site dimensions {model.mps_.phys_dims} disagree with n_categories.")
        model.n_categories_ = n_categories
        model.n_features_in_ = len(tensors)
        model.history_ = history
        model.learning_rate_ = learning_rate_
        model.selection_ = selection
        return model
