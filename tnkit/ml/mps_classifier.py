"""Matrix product state classifier (Stoudenmire & Schwab 2016) as a scikit-learn estimator.

:class:`MPSClassifier` embeds each feature with a local feature map
(:mod:`tnkit.ml.feature_maps`) and contracts the product state with a matrix product
state that carries one extra label index on its *label site*; the model, its tensor
layout and its exact gradients are in :mod:`tnkit.ml.chain`. It trains either by
minibatch Adam over every tensor at a fixed bond dimension (``solver="adam"``, the
default; :func:`adam_fit` on the shared loop of :mod:`tnkit.ml.trainers`) or by the
paper's two-site sweeps with SVD bond growth (``solver="sweep"``,
:mod:`tnkit.ml.chain_sweeps`). This module holds the estimator, its defaults
(:data:`ADAM_LEARNING_RATE`, :data:`ADAM_STEPS`, :func:`default_n_epochs`,
:data:`ADAM_ALPHA`, :data:`SWEEP_ALPHA`) and :func:`adam_fit`. (``sweep_fit``,
``chain_gradients``, ``chain_outputs``, ``init_tensors``, ``input_gradients`` and
``raw_chain_outputs`` are still importable from here.)

References
----------
E. M. Stoudenmire and D. J. Schwab, "Supervised learning with tensor networks",
NeurIPS 2016, arXiv:1605.05775.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..core.contract import contract
from ..core.threads import blas_threads
from .base import TensorNetworkClassifierBase
from .chain import (
    canonicalize_chain,
    chain_as_mps,
    chain_gradients,
    chain_outputs,
    init_tensors,
    input_gradients,
    raw_chain_outputs,
)
from .chain_sweeps import LOCAL_SOLVERS, sweep_fit
from .feature_maps import embed, passthrough_vector
from .optim import LEARNING_RATE_SCHEDULES
from .trainers import AdamSettings, LossSettings, epochs_for_steps, minibatch_adam, training_accuracy
from .validation import Rule, fraction, integer, number, option, store_params

__all__ = ["MPSClassifier", "adam_fit", "default_n_epochs", "ADAM_LEARNING_RATE", "ADAM_STEPS", "ADAM_MAX_EPOCHS",
           "ADAM_ALPHA", "SWEEP_ALPHA"]

SOLVERS = ("sweep", "adam")

#: Peak Adam step of the default cosine schedule (``learning_rate=None``).
ADAM_LEARNING_RATE = 0.002

#: Optimiser steps of the default schedule: ``n_epochs=None`` runs
#: ``ceil(ADAM_STEPS / steps_per_epoch)`` epochs, at most :data:`ADAM_MAX_EPOCHS`.
ADAM_STEPS = 11000
ADAM_MAX_EPOCHS = 100

#: ``alpha=None`` (the default) resolves to these: no L2 term for Adam, whose loss sees only
#: the output direction (an L2 term then only shrinks the tensors, which made long runs
#: collapse), and 0.003 for sweeps, where it keeps the rank of each updated pair low.
ADAM_ALPHA = 0.0
SWEEP_ALPHA = 0.003


def default_n_epochs(n_samples: int, batch_size: int) -> int:
    """Adam epochs ``fit`` runs when ``n_epochs=None``: the fewest giving :data:`ADAM_STEPS` steps.

    The cosine schedule needs thousands of steps to warm up, explore at its peak and
    settle: 60,000 images get 12 epochs (11,256 steps of 64, the MNIST figures),
    10,000 images 71; small sets are capped at :data:`ADAM_MAX_EPOCHS`.
    """
    return epochs_for_steps(n_samples, batch_size, ADAM_STEPS, ADAM_MAX_EPOCHS)


def adam_fit(
    tensors: list[np.ndarray],
    label_site: int,
    phi: np.ndarray,
    Y: np.ndarray,
    adam: AdamSettings,
    objective: LossSettings,
    *,
    rng: np.random.Generator,
    verbose: bool = False,
) -> tuple[list[np.ndarray], list[dict[str, float]]]:
    """Minibatch Adam over all tensors at fixed bond dimensions; returns the canonicalised chain.

    The loop is :func:`tnkit.ml.trainers.minibatch_adam` (one Adam run over the whole
    call, tensors balanced once at the start) with :func:`chain_gradients` as the batch
    loss. ``adam.learning_rate`` is the peak rate of ``adam.schedule``
    (:func:`tnkit.ml.optim.scheduled_learning_rate`), which runs over the
    ``n_epochs * ceil(len(phi) / batch_size)`` steps of this call; ``objective`` is the
    loss of :func:`chain_gradients`.
    """

    def batch_loss(ts: list[np.ndarray], idx: np.ndarray) -> tuple[float, list[np.ndarray]]:
        return chain_gradients(ts, label_site, phi[idx], Y[idx], loss=objective.loss, alpha=objective.alpha,
                               temperature=objective.temperature)

    def evaluate(ts: list[np.ndarray]) -> dict[str, float]:
        return {"accuracy": training_accuracy(chain_outputs(ts, label_site, phi), Y),
                "max_bond": max(t.shape[2] for t in ts)}

    tensors, history = minibatch_adam(tensors, batch_loss, len(phi), adam, rng=rng, evaluate=evaluate,
                                      verbose=verbose)
    return canonicalize_chain(tensors, label_site), history


# --------------------------------------------------------------------------- the estimator


class MPSClassifier(TensorNetworkClassifierBase):
    """Matrix product state classifier of Stoudenmire & Schwab (2016).

    The defaults are the recipe behind the published MNIST figures
    (``docs/classifiers.md``): bond 10, minibatch Adam (batch 64) on the squared loss
    of the output direction, peak step 0.002 with a 3% warm-up and a cosine decay,
    and as many epochs as give at least 5,000 steps (6 on 60,000 images, 32 on
    10,000; see :func:`default_n_epochs`). Features must lie in :attr:`feature_range`
    (``[0, 1]`` for the default cos-sin map).

    Parameters
    ----------
    max_bond : int or None
        Fixed bond dimension (``solver="adam"``), or the largest bond kept by the SVD
        splits (``solver="sweep"``). Default 10: on MNIST 14x14 bond 20 gave the same
        error (1.96% against 1.93%) at 1.3 times the cost.
    cutoff : float
        Relative discarded weight allowed per split (sweeps; see ``tnkit.core.linalg``).
    feature_map : {"cos-sin", "linear", "polynomial", "one-hot"}
        Local feature map (:mod:`tnkit.ml.feature_maps`). cos-sin and linear expect
        features in ``[0, 1]``: ``fit`` refuses negative values and every method warns
        (``FeatureRangeWarning``) about values above 1. Divide images by their largest
        possible pixel value (not per pixel); use
        ``sklearn.preprocessing.MinMaxScaler(clip=True)`` for other features.
    local_dim : int
        Length (at least 2) of each local feature vector (physical dimension of the sites).
    loss : {"squared", "cross-entropy"}
        The paper's squared loss on the one-hot label, or softmax cross-entropy;
        either is taken on the unit output direction ``u = f / ||f||``
        (:func:`tnkit.ml.losses.normalized_loss`), so every sample counts equally
        whatever the scale of its contraction. Squared: the cross-entropy never
        trained faster on MNIST and diverged first at larger steps.
    solver : {"adam", "sweep"}
        Minibatch Adam over all tensors at the fixed bond ``max_bond`` (default), or
        the paper's two-site DMRG-style sweeps with SVD bond growth. Adam costs about
        a sixth of a sweep per sample and reached 1.9-2.0% on MNIST where two sweeps
        of 10,000 images at bond 20 reached 5.5%.
    local_solver : {"least-squares", "gradient"}
        Sweeps only: CG on the ridge least-squares problem of the per-sample
        normalised projected inputs, or gradient steps on the loss.
    n_sweeps : int
        Sweeps per ``fit`` (``solver="sweep"``; each one pass across the chain).
    local_steps : int
        CG or gradient steps on each merged tensor (sweeps).
    alpha : float or None
        L2 (ridge) regularisation. None (default) resolves by solver (stored in
        ``alpha_``): 0 for Adam (:data:`ADAM_ALPHA`; its loss sees only the output
        direction, so an L2 term only shrinks the tensors, and long runs with 0.003
        collapsed), 0.003 for sweeps (:data:`SWEEP_ALPHA`), where it regularises the
        local least-squares problems and keeps the rank of the updated pair low so the
        SVD split loses little (digits, bond 20: ``alpha=0`` let the second sweep fall
        from 0.97 to 0.72 training accuracy, 0.003 reached 0.999).
    learning_rate : float or None
        Adam's peak step (None: :data:`ADAM_LEARNING_RATE` = 0.002; 0.003 diverged on
        60,000 MNIST images, 0.006 was too large on 10,000), or the first trial step
        of the ``"gradient"`` local solver of sweeps (None: 1.0; the step then adapts).
    learning_rate_schedule : {"cosine", "constant"}
        Adam only: a linear warm-up over the first 3% of the steps of each ``fit``
        followed by a cosine decay towards 0 (default;
        :func:`tnkit.ml.optim.scheduled_learning_rate`), ``learning_rate`` being the
        peak; or a constant step. On MNIST the schedule took the error from 4.0% to 3.2%
        in the same 4 epochs.
    temperature : float
        Logit scale: ``predict_proba`` is ``softmax(temperature * u)`` and the
        cross-entropy is taken on those logits.
    n_epochs : int or None
        Adam epochs per ``fit``; None (default) chooses them from the data's size
        (:func:`default_n_epochs`; the choice is stored in ``n_epochs_``).
    batch_size : int
        Adam minibatch size (64).
    init_bond : int
        Sweeps: bond dimension of the initial near-identity chain (bonds then grow up
        to ``max_bond``).
    init_noise : float
        Scale of the Gaussian noise added to the initial near-identity tensors.
    random_state : None, int or numpy Generator
        Seed of the initial weights and the minibatch order.
    verbose : bool
        Show a tqdm progress bar per sweep (or epoch) with the loss and train accuracy.
    warm_start : bool
        ``fit`` continues from the current model instead of starting afresh.

    Attributes
    ----------
    tensors_ : list of numpy.ndarray
        Site tensors ``(D_left, d, D_right)``; the label site's is ``(D_left, d, D_right, n_classes)``.
    label_site_ : int
        Site holding the label index (the orthogonality centre).
    classes_ : numpy.ndarray
    n_features_in_ : int
    history_ : list of dict
        Per sweep/epoch: ``loss``, ``accuracy`` (training), ``max_bond``, ``seconds``
        (and ``learning_rate`` for Adam).
    n_epochs_ : int
        Adam epochs of the last ``fit`` (``solver="adam"``).
    alpha_ : float
        The L2 regularisation the last ``fit`` used (``alpha``, or its solver's default).

    Examples
    --------
    >>> from tnkit.datasets import load_digits
    >>> from tnkit.ml import MPSClassifier
    >>> X, y = load_digits()
    >>> clf = MPSClassifier(max_bond=8, solver="sweep", n_sweeps=2, random_state=0).fit(X[:300], y[:300])
    >>> clf.score(X[300:600], y[300:600]) > 0.5
    True
    """

    _kind = "MPSClassifier"

    def __init__(
        self,
        max_bond: int | None = 10,
        *,
        cutoff: float = 1e-10,
        feature_map: str = "cos-sin",
        local_dim: int = 2,
        loss: str = "squared",
        solver: str = "adam",
        n_sweeps: int = 4,
        local_steps: int = 4,
        alpha: float | None = None,
        learning_rate: float | None = None,
        learning_rate_schedule: str = "cosine",
        temperature: float = 10.0,
        local_solver: str = "least-squares",
        n_epochs: int | None = None,
        batch_size: int = 64,
        init_bond: int = 4,
        init_noise: float = 1e-2,
        random_state: Any = None,
        verbose: bool = False,
        warm_start: bool = False,
    ) -> None:
        store_params(self, locals())

    def _parameter_rules(self) -> dict[str, Rule]:
        return {
            **super()._parameter_rules(),
            "cutoff": fraction(),
            "solver": option(SOLVERS),
            "local_solver": option(LOCAL_SOLVERS),
            "learning_rate_schedule": option(LEARNING_RATE_SCHEDULES),
            "n_sweeps": integer(minimum=1),
            "local_steps": integer(minimum=1),
            "batch_size": integer(minimum=1),
            "init_bond": integer(minimum=1),
            "n_epochs": integer(minimum=1, optional=True),
            "alpha": number(positive=False, optional=True),
            "temperature": number(),
            "init_noise": number(positive=False),
            "learning_rate": number(optional=True),
        }

    def _init_model(self, phi: np.ndarray, Y: np.ndarray, rng: np.random.Generator) -> None:
        bond = self.init_bond if self.solver == "sweep" else (self.max_bond or self.init_bond)
        if self.max_bond is not None:
            bond = min(bond, self.max_bond)
        # sweeps start at site 0; Adam from the middle (shortest gradient paths, D*d*D label inputs)
        sweep = self.solver == "sweep"
        label_site = 0 if sweep else phi.shape[1] // 2
        tensors = init_tensors(phi.shape[1], self.local_dim, Y.shape[1], bond, rng, noise=self.init_noise,
                               passthrough=None if sweep else passthrough_vector(phi), label_site=label_site)
        self.tensors_, self.label_site_ = tensors, label_site

    def _train(self, phi, Y, n_iter, rng):
        default_alpha = SWEEP_ALPHA if self.solver == "sweep" else ADAM_ALPHA
        self.alpha_ = default_alpha if self.alpha is None else self.alpha
        return SOLVER_FUNCTIONS[self.solver](self, phi, Y, n_iter, rng)

    def _decision(self, phi: np.ndarray) -> np.ndarray:
        return chain_outputs(self.tensors_, self.label_site_, phi)

    def _logit_scale(self) -> float:
        return float(self.temperature)

    def _model_arrays(self):
        return list(self.tensors_), {"label_site": self.label_site_}

    def _restore_model(self, tensors, meta):
        self.tensors_ = [np.array(t) for t in tensors]
        self.label_site_ = int(meta["label_site"])

    # ------------------------------------------------------------------ inspection

    @property
    def bond_dims_(self) -> tuple[int, ...]:
        """Bond dimensions of the trained chain (``N - 1`` bonds)."""
        check_is_fitted(self)
        return tuple(t.shape[2] for t in self.tensors_[:-1])

    def to_mps(self) -> Any:
        """The weights as a :class:`tnkit.MPS`, the label fused into the label site's physical index.

        The label site's physical dimension is ``local_dim * n_classes`` (index
        ``s * n_classes + k``); the canonical bookkeeping is verified, not assumed.
        """
        check_is_fitted(self)
        psi = chain_as_mps(self.tensors_, self.label_site_)
        psi.adopt_canonical_range(self.label_site_, self.label_site_ + 1)
        return psi

    def entanglement_entropy(self) -> np.ndarray:
        """Von Neumann entropy (nats) across each bond of the normalised weight MPS, shape (N-1,)."""
        return np.atleast_1d(np.asarray(self.to_mps().normalized().entanglement_entropy(), dtype=float))

    def feature_importance(self, X: Any, y: Any = None) -> np.ndarray:
        """How much each feature matters: exact occlusion sensitivity, shape (n_features,).

        For each feature ``i``, the mean over samples of ``|f_y(x) - f_y(x with x_i = 0)| / ||f(x)||``
        (``y`` the true class, or the predicted one when ``y`` is None; ``f`` the raw
        contraction). The contraction is linear in each site's input vector, so the
        change is computed exactly from ``d f_y / d phi(x_i)`` in one backward pass.
        For images, ``x_i = 0`` is a blank pixel; reshape the result to the image shape.
        """
        check_is_fitted(self)
        X = self._validated_X(X, reset=False)
        phi = self._embed(X)
        cls = np.argmax(self._decision(phi), axis=1) if y is None else np.searchsorted(self.classes_, np.asarray(y))
        G = np.eye(len(self.classes_))[cls]
        with blas_threads(self.max_bond or 1):
            grads = input_gradients(self.tensors_, self.label_site_, phi, G)
            f = raw_chain_outputs(self.tensors_, self.label_site_, phi)
        blank = embed(np.zeros((1, 1)), self.feature_map, local_dim=self.local_dim)[0, 0]
        change = np.abs(contract("bis,bis->bi", grads, blank[None, None, :] - phi))
        norms = np.linalg.norm(f, axis=1)
        return np.mean(change / np.where(norms > 0, norms, 1.0)[:, None], axis=0)


def _train_by_sweeps(clf: MPSClassifier, phi: np.ndarray, Y: np.ndarray, n_iter: int | None,
                     rng: np.random.Generator) -> Any:
    """``solver="sweep"``: two-site DMRG-style sweeps (:func:`tnkit.ml.chain_sweeps.sweep_fit`)."""
    clf.tensors_, clf.label_site_, history = sweep_fit(
        clf.tensors_, clf.label_site_, phi, Y,
        n_sweeps=n_iter or clf.n_sweeps, max_bond=clf.max_bond, cutoff=clf.cutoff,
        loss=clf.loss, local_steps=clf.local_steps, alpha=clf.alpha_,
        learning_rate=1.0 if clf.learning_rate is None else clf.learning_rate,
        temperature=clf.temperature, local_solver=clf.local_solver, verbose=clf.verbose,
    )
    return history


def _train_by_adam(clf: MPSClassifier, phi: np.ndarray, Y: np.ndarray, n_iter: int | None,
                   rng: np.random.Generator) -> Any:
    """``solver="adam"``: minibatch Adam on every tensor at fixed bonds (:func:`tnkit.ml.chain.adam_fit`)."""
    clf.n_epochs_ = n_iter or clf.n_epochs or default_n_epochs(len(phi), clf.batch_size)
    adam = AdamSettings(
        n_epochs=clf.n_epochs_, batch_size=clf.batch_size, schedule=clf.learning_rate_schedule,
        learning_rate=ADAM_LEARNING_RATE if clf.learning_rate is None else clf.learning_rate,
    )
    objective = LossSettings(clf.loss, alpha=clf.alpha_, temperature=clf.temperature)
    clf.tensors_, history = adam_fit(clf.tensors_, clf.label_site_, phi, Y, adam, objective, rng=rng,
                                     verbose=clf.verbose)
    return history


#: Training algorithms of :class:`MPSClassifier` by ``solver`` name (the keys are :data:`SOLVERS`): a
#: function of ``(classifier, phi, Y, n_iter, rng)`` that trains ``tensors_`` in place and returns the history.
SOLVER_FUNCTIONS = {"sweep": _train_by_sweeps, "adam": _train_by_adam}
