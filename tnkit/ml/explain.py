"""Unsupervised analysis with a fitted Born machine (MPS or tree): anomaly scores and their explanations.

After Aizpurua, Palmer, Mugel, Orús et al., "Tensor networks for explainable machine
learning in cybersecurity" (arXiv:2401.00867): the trained Born machine scores each
sample by its negative log-likelihood, explains the score feature by feature through
exact conditional probabilities, and exposes the correlations it learnt through the
entanglement of its state.

* :func:`anomaly_scores`: ``-log p(x)`` (nats), higher is more anomalous.
* :func:`chain_surprisal`: ``-log p(x_i | x_0..x_{i-1})`` per feature; the row sums
  are exactly the anomaly scores (the chain rule), so each feature's share of a score
  is additive.
* :func:`leave_one_out_probabilities`: ``p(x_i | all other features)``: how plausible
  each observed value is given the rest of the sample; low values point at the
  features that make a sample anomalous. :func:`explain` gathers both.
* :func:`entanglement_entropies`: von Neumann entropy (nats) of the state at every
  bond: how much information the model carries between the features left and right
  of the bond.
* :func:`mutual_information`: between two features, quantum (from the two-site reduced
  density matrix of ``psi``) or classical (of the model's two-feature marginal).
* :func:`model_features` and :func:`cluster`: per-sample features from the model (the
  normalised environment vectors at a bond, or the leave-one-out log-probabilities),
  clustered with k-means.

Sites are features, in the order of the columns of ``X``. Every function takes an
:class:`~tnkit.ml.MPSBornMachine` or a :class:`~tnkit.ml.ttn_born_machine.TTNBornMachine`;
for a tree the chain rule runs over the features in column order through exact
marginals (:func:`tnkit.ttn.sampling.log_marginal`), the entropies are those of the
tree's bonds (one per non-root node) and the embedding uses the inside and outside
vectors of one bond.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..core.contract import contract
from ..core.rng import as_generator
from ..core.validate import check_int, check_option, check_site
from ..mps.measure import entropy_of_probabilities
from .born_machine import BornMachineBase, MPSBornMachine, check_discrete_data
from .environments import absorb_left, absorb_right, normalize_rows
from .ttn_born_machine import TTNBornMachine, tree_embedding

__all__ = [
    "ScoreExplanation",
    "anomaly_scores",
    "chain_surprisal",
    "leave_one_out_probabilities",
    "explain",
    "entanglement_entropies",
    "mutual_information",
    "mutual_information_matrix",
    "model_features",
    "cluster",
]

_MI_KINDS = ("quantum", "classical")
_FEATURE_KINDS = ("embedding", "conditionals")


def _fitted(model: BornMachineBase) -> None:
    if not isinstance(model, (MPSBornMachine, TTNBornMachine)):
        raise TypeError(f"`model` must be an MPSBornMachine or a TTNBornMachine, got {type(model).__name__}.")
    check_is_fitted(model, "mps_" if isinstance(model, MPSBornMachine) else "ttn_")


def _fitted_data(model: BornMachineBase, X: Any) -> np.ndarray:
    _fitted(model)
    return check_discrete_data("X", X, model.n_categories_)


def anomaly_scores(model: MPSBornMachine, X: Any) -> np.ndarray:
    """Negative log-likelihood ``-log p(x)`` (nats) of each row; higher is more anomalous.

    Returns
    -------
    numpy.ndarray, shape (n_samples,)
    """
    _fitted_data(model, X)
    return -model.log_prob(X)


def chain_surprisal(model: MPSBornMachine, X: Any) -> np.ndarray:
    """``-log p(x_i | x_0, ..., x_{i-1})`` for every feature ``i`` of every row.

    Computed exactly from the right-canonical form: with the prefix carried as a
    normalised left vector ``l``, ``p(x_i | x_<i) = ||l A_i[:, x_i, :]||**2``.

    Returns
    -------
    numpy.ndarray, shape (n_samples, n_features)
        Rows sum to :func:`anomaly_scores`.
    """
    X = _fitted_data(model, X)
    if isinstance(model, TTNBornMachine):
        return _tree_chain_surprisal(model, X)
    mps = model.mps_
    mps.canonicalize_(0).normalize_()
    n = X.shape[0]
    rows = np.arange(n)
    out = np.empty(X.shape)
    left = np.ones((n, 1), dtype=mps.dtype)
    for i, a in enumerate(mps.tensors):
        step = contract("na,asb->nsb", left, a)
        total = _abs2(step).sum(axis=(1, 2))
        picked = step[rows, X[:, i]]
        weight = _abs2(picked).sum(axis=1)
        with np.errstate(divide="ignore"):
            out[:, i] = np.log(total) - np.log(weight)
        left, _ = normalize_rows(picked)
    return out


def _tree_chain_surprisal(model: TTNBornMachine, X: np.ndarray) -> np.ndarray:
    """``log p(x_<i) - log p(x_<=i)`` from the tree's exact prefix marginals."""
    n, n_features = X.shape
    prefix = np.zeros(n)  # log p(empty prefix) = 0
    out = np.empty(X.shape)
    for i in range(n_features):
        observed = np.zeros((n, n_features), dtype=bool)
        observed[:, : i + 1] = True
        current = model._log_marginal(X, observed) if i < n_features - 1 else model.log_prob(X)
        with np.errstate(invalid="ignore"):
            out[:, i] = prefix - current
        prefix = current
    return out


def leave_one_out_probabilities(model: MPSBornMachine, X: Any) -> np.ndarray:
    """``p(x_i | x_j for all j != i)`` for every feature ``i`` of every row.

    One left and one right pass of per-sample environments give ``psi(x)`` with feature
    ``i`` set to every value at once: ``O(n N d D**2)`` in all.

    Returns
    -------
    numpy.ndarray, shape (n_samples, n_features)
    """
    X = _fitted_data(model, X)
    rows = np.arange(len(X))
    return np.stack([dist[rows, X[:, i]] for i, dist in enumerate(_conditional_distributions(model, X))], axis=1)


def _conditional_distributions(model: MPSBornMachine, X: np.ndarray) -> list[np.ndarray]:
    """Per feature ``i``, the ``(n, d_i)`` distribution of ``x_i`` given all other features."""
    if isinstance(model, TTNBornMachine):
        return _tree_conditional_distributions(model, X)
    tensors = model.mps_.tensors
    n, n_sites = X.shape
    rights: list[np.ndarray] = [np.ones((n, 1), dtype=model.mps_.dtype)] * (n_sites + 1)
    for i in range(n_sites - 1, 0, -1):
        rights[i], _ = normalize_rows(absorb_right(rights[i + 1], tensors[i], X[:, i]))
    out = []
    left = np.ones((n, 1), dtype=model.mps_.dtype)
    for i, a in enumerate(tensors):
        weights = _abs2(contract("na,asb,nb->ns", left, a, rights[i + 1]))   # |psi(x_i = s)|**2, scaled
        total = weights.sum(axis=1, keepdims=True)
        out.append(np.divide(weights, total, out=np.zeros_like(weights), where=total > 0))
        left, _ = normalize_rows(absorb_left(left, a, X[:, i]))
    return out


def _tree_conditional_distributions(model: TTNBornMachine, X: np.ndarray) -> list[np.ndarray]:
    """``p(x_i = v | rest)`` from ``log p`` of every row with feature ``i`` set to each value."""
    out = []
    for i, d in enumerate(model.n_categories_):
        logs = np.empty((len(X), int(d)))
        for v in range(int(d)):
            changed = X.copy()
            changed[:, i] = v
            logs[:, v] = model.log_prob(changed)
        peak = logs.max(axis=1, keepdims=True)
        weights = np.exp(logs - np.where(np.isfinite(peak), peak, 0.0))
        total = weights.sum(axis=1, keepdims=True)
        out.append(np.divide(weights, total, out=np.zeros_like(weights), where=total > 0))
    return out


@dataclass(frozen=True)
class ScoreExplanation:
    """Anomaly scores with their feature-by-feature explanation.

    Attributes
    ----------
    scores : numpy.ndarray, shape (n,)
        ``-log p(x)`` in nats.
    surprisal : numpy.ndarray, shape (n, n_features)
        ``-log p(x_i | x_<i)``; rows sum to ``scores``.
    conditional : numpy.ndarray, shape (n, n_features)
        ``p(x_i | all other features)``.
    top_features : numpy.ndarray of int, shape (n, top_k)
        Per row, the features with the lowest ``conditional``, most surprising first.
    """

    scores: np.ndarray
    surprisal: np.ndarray
    conditional: np.ndarray
    top_features: np.ndarray

    def __repr__(self) -> str:
        return (
            f"ScoreExplanation(n_samples={len(self.scores)}, n_features={self.surprisal.shape[1]}, "
            f"mean score={float(np.mean(self.scores)):.4f} nats, top_k={self.top_features.shape[1]})"
        )


def explain(model: MPSBornMachine, X: Any, *, top_k: int = 5) -> ScoreExplanation:
    """Anomaly scores of the rows of ``X`` and the features that drive them.

    Parameters
    ----------
    model : MPSBornMachine
        Fitted.
    X : array_like of int, shape (n, n_features)
    top_k : int
        Number of most surprising features listed per row.
    """
    top_k = check_int("top_k", top_k, minimum=1)
    surprisal = chain_surprisal(model, X)
    conditional = leave_one_out_probabilities(model, X)
    top = np.argsort(conditional, axis=1, kind="stable")[:, : min(top_k, conditional.shape[1])]
    return ScoreExplanation(surprisal.sum(axis=1), surprisal, conditional, top)


def entanglement_entropies(model: MPSBornMachine) -> np.ndarray:
    """Von Neumann entanglement entropy (nats) of the model's state at every bond.

    Returns
    -------
    numpy.ndarray
        MPS: shape ``(n_features - 1,)``, entry ``b`` the entropy between features
        ``0..b`` and ``b+1..N-1``. Tree: one entry per edge, in the order of
        ``tree_.edges`` (:meth:`tnkit.TTN.entropies`).
    """
    _fitted(model)
    if isinstance(model, TTNBornMachine):
        return np.asarray(model.ttn_.entropies())
    return np.asarray(model.mps_.entanglement_entropy())


def _classical_mi(p2: np.ndarray) -> float:
    p2 = np.clip(p2, 0.0, None)
    p2 = p2 / p2.sum()
    return (
        entropy_of_probabilities(p2.sum(axis=1))
        + entropy_of_probabilities(p2.sum(axis=0))
        - entropy_of_probabilities(p2.ravel())
    )


def mutual_information(model: MPSBornMachine, i: int, j: int, *, kind: str = "quantum") -> float:
    """Mutual information (nats) between features ``i`` and ``j``.

    Parameters
    ----------
    kind : {"quantum", "classical"}
        ``"quantum"``: ``S(rho_i) + S(rho_j) - S(rho_ij)`` of the reduced density
        matrices of ``psi`` (von Neumann entropies); ``"classical"``: the Shannon
        mutual information of the model's marginal ``p(x_i, x_j)`` (the diagonal of
        ``rho_ij``).
    """
    check_option("kind", kind, _MI_KINDS)
    _fitted(model)
    n = model.n_features_in_
    i, j = check_site("i", i, n), check_site("j", j, n)
    if i == j:
        raise ValueError(f"`i` and `j` must be different features, got {i} twice.")
    state = model.ttn_ if isinstance(model, TTNBornMachine) else model.mps_
    if kind == "quantum":
        if isinstance(model, MPSBornMachine):
            return float(state.mutual_information(i, j))
        return _von_neumann(state.reduced_density_matrix(i)) + _von_neumann(
            state.reduced_density_matrix(j)
        ) - _von_neumann(state.reduced_density_matrix((i, j)))
    rho = state.reduced_density_matrix((i, j))
    return _classical_mi(np.diag(rho).real.reshape(model.n_categories_[i], model.n_categories_[j]))


def _von_neumann(rho: np.ndarray) -> float:
    """Entropy (nats) of a density matrix (any normalisation)."""
    w = np.clip(np.linalg.eigvalsh(rho), 0.0, None)
    return entropy_of_probabilities(w / w.sum())


def mutual_information_matrix(model: MPSBornMachine, *, kind: str = "quantum") -> np.ndarray:
    """Symmetric ``(n_features, n_features)`` matrix of :func:`mutual_information`, zero diagonal.

    ``"quantum"`` uses the engine's one-sweep-per-row algorithm (``O(N**2)``
    transfer steps); ``"classical"`` takes one two-site marginal per pair
    (``O(N**3)``), meant for tens of features.
    """
    check_option("kind", kind, _MI_KINDS)
    _fitted(model)
    if kind == "quantum" and isinstance(model, MPSBornMachine):
        return np.asarray(model.mps_.mutual_information_matrix())
    n = model.n_features_in_
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = mutual_information(model, i, j, kind=kind)
    return out


def model_features(model: MPSBornMachine, X: Any, *, kind: str = "embedding", bond: int | None = None) -> np.ndarray:
    """Per-sample features computed by the model, for clustering or visualisation.

    Parameters
    ----------
    kind : {"embedding", "conditionals"}
        ``"embedding"``: the projectors ``l l^H`` and ``r r^H`` of the normalised left
        environment ``l`` of features ``0..bond`` and right environment ``r`` of
        ``bond+1..N-1``, flattened and concatenated (``2 D**2`` numbers, real and
        imaginary parts of a complex model: ``4 D**2``; the model's compressed
        description of each half). Projectors drop the phase, which a Born machine
        leaves arbitrary, and ``||l l^H - l' l'^H||**2 = 2 - 2 |l^H l'|**2`` does not
        depend on the (unitary) gauge of the bond;
        ``"conditionals"``: the model's distribution of each feature given all the
        others, ``p(x_i = v | x_{-i})`` for every feature and value, concatenated
        (``sum(n_categories_)`` numbers: what the model predicts each feature to be).
    bond : int, optional
        Bond of the embedding; default the middle one. For a tree, a non-root node: its
        parent bond (default the root's first internal child, or first child).

    Returns
    -------
    numpy.ndarray, shape (n, 2 * D_bond**2), (n, 4 * D_bond**2) (complex model) or (n, sum(n_categories_))
    """
    check_option("kind", kind, _FEATURE_KINDS)
    X = _fitted_data(model, X)
    if kind == "conditionals":
        return np.concatenate(_conditional_distributions(model, X), axis=1)
    if isinstance(model, TTNBornMachine):
        inside, outside = tree_embedding(model, X, bond)
        return np.concatenate([_projector(inside), _projector(outside)], axis=1)
    n_sites = model.n_features_in_
    bond = (n_sites - 2) // 2 if bond is None else check_site("bond", bond, n_sites - 1, what="bond")
    mps = model.mps_
    mps.canonicalize_(bond + 1)   # sites <= bond left-, sites > bond + 1 right-isometric
    tensors = mps.tensors
    left = np.ones((len(X), 1), dtype=mps.dtype)
    for i in range(bond + 1):
        left, _ = normalize_rows(absorb_left(left, tensors[i], X[:, i]))
    right = np.ones((len(X), 1), dtype=mps.dtype)
    for i in range(n_sites - 1, bond, -1):
        right, _ = normalize_rows(absorb_right(right, tensors[i], X[:, i]))
    return np.concatenate([_projector(left), _projector(right)], axis=1)


def _projector(vectors: np.ndarray) -> np.ndarray:
    """The flattened projectors ``v v^H`` of the rows, as real numbers (real and imaginary parts)."""
    n = len(vectors)
    outer = contract("na,nb->nab", vectors, vectors.conj()).reshape(n, -1)
    return np.concatenate([outer.real, outer.imag], axis=1) if np.iscomplexobj(outer) else outer


def _abs2(values: np.ndarray) -> np.ndarray:
    """``|values|**2`` elementwise, real."""
    return values.real**2 + values.imag**2 if np.iscomplexobj(values) else values**2


def cluster(
    model: MPSBornMachine,
    X: Any,
    n_clusters: int,
    *,
    kind: str = "embedding",
    bond: int | None = None,
    random_state: Any = None,
) -> np.ndarray:
    """Cluster the rows of ``X`` by k-means on :func:`model_features`.

    Returns
    -------
    numpy.ndarray of int, shape (n,)
        Cluster label of each row.
    """
    from sklearn.cluster import KMeans

    n_clusters = check_int("n_clusters", n_clusters, minimum=1)
    features = model_features(model, X, kind=kind, bond=bond)
    seed = int(as_generator(random_state).integers(2**31 - 1))
    return KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(features)
