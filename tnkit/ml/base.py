"""The scikit-learn estimator base of the tensor-network classifiers.

:class:`TensorNetworkClassifierBase` holds what :class:`tnkit.ml.MPSClassifier` and
:class:`tnkit.ml.TTNClassifier` share: parameter and input validation (scikit-learn's
``validate_data`` with tnkit's messages on top, and the feature range of the feature
map, declared through :attr:`~TensorNetworkClassifierBase.feature_range` and the
``positive_only`` input tag), label encoding, the embedding of the features, the
training entry points (``fit``, ``partial_fit``, ``warm_start``), prediction and
schema-versioned saving. A classifier family implements the hooks listed in the class
docstring.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..core.rng import as_generator
from ..core.threads import blas_threads
from ..core.validate import check_int, check_option
from ..io import load_arrays, save_arrays
from .feature_maps import FEATURE_MAPS, FEATURE_RANGES, check_feature_range, embed
from .losses import LOSSES, softmax
from .validation import Rule, bond, check_params, option

__all__ = ["TensorNetworkClassifierBase", "check_local_dim"]


def check_local_dim(name: str, value: Any) -> None:
    """Rule: ``local_dim`` is an integer >= 2 (a one-dimensional feature vector carries no information)."""
    if check_int(name, value, minimum=1) == 1:
        raise ValueError(
            f"`{name}` must be at least 2, got 1: a one-dimensional feature vector carries no information "
            "about the feature (every sample embeds as the same product state), so the classifier could "
            "only learn a constant prediction."
        )


class TensorNetworkClassifierBase(ClassifierMixin, BaseEstimator):
    """scikit-learn plumbing shared by the tensor-network classifiers.

    The base class validates the parameters and the input, encodes the labels, embeds
    the features, pins the BLAS threads, keeps ``history_``, and implements ``fit``,
    ``partial_fit``, ``predict``, ``predict_proba``, ``decision_function``, ``save`` and
    ``load``. A subclass sets ``_kind`` (the name in its saved files), has the
    attributes ``feature_map``, ``local_dim``, ``loss``, ``max_bond``,
    ``random_state`` and ``warm_start``, and implements these hooks:

    ``_parameter_rules(self) -> dict[str, Rule]``
        Its parameters' rules (:mod:`tnkit.ml.validation`), merged over the base's
        (``{**super()._parameter_rules(), ...}``); all are checked before any work.
    ``_init_model(self, phi, Y, rng) -> None``
        Build a fresh model: ``phi`` (n_samples, n_features, local_dim) the embedded
        inputs, ``Y`` (n_samples, n_classes) the one-hot targets, ``rng`` a
        ``numpy.random.Generator``. Sets the fitted tensors.
    ``_train(self, phi, Y, n_iter, rng) -> list[dict]``
        Train the current model; ``n_iter`` is None in ``fit`` (the estimator's own
        epochs or sweeps) and 1 in ``partial_fit``. Returns one history record per
        epoch or sweep (appended to ``history_``).
    ``_decision(self, phi) -> numpy.ndarray``
        Unit output directions ``f / ||f||``, shape (n_samples, n_classes).
    ``_logit_scale(self) -> float``
        Factor between the decision function and the softmax logits of
        ``predict_proba`` (default 1).
    ``_model_arrays(self) -> (list of numpy.ndarray, dict)`` and ``_restore_model(self, tensors, meta)``
        The fitted model as arrays plus metadata for ``save``, and back for ``load``.
    """

    _kind = "TensorNetworkClassifier"

    def _embed(self, X: np.ndarray) -> np.ndarray:
        return embed(X, self.feature_map, local_dim=self.local_dim)

    def _parameter_rules(self) -> dict[str, Rule]:
        """Rules of the parameters every classifier has (subclasses merge theirs over these)."""
        return {
            "feature_map": option(FEATURE_MAPS),
            "loss": option(LOSSES),
            "local_dim": check_local_dim,
            "max_bond": bond(),
        }

    def _check_params(self) -> None:
        check_params(self, self._parameter_rules())

    @property
    def feature_range(self) -> tuple[float, float] | None:
        """Interval ``(low, high)`` the features should lie in for ``feature_map``, or None (any real).

        ``fit``, ``predict`` and friends warn (:class:`tnkit.ml.feature_maps.FeatureRangeWarning`)
        when the data leave it: the cos-sin map is periodic outside ``[0, 1]``.
        """
        check_option("feature_map", self.feature_map, FEATURE_MAPS)
        return FEATURE_RANGES[self.feature_map]

    def __sklearn_tags__(self) -> Any:
        """scikit-learn tags: maps meant for ``[0, 1]`` declare non-negative input (``positive_only``)."""
        tags = super().__sklearn_tags__()
        interval = FEATURE_RANGES.get(self.feature_map) if isinstance(self.feature_map, str) else None
        tags.input_tags.positive_only = interval is not None and interval[0] >= 0
        return tags

    def _validated_X(self, X: Any, y: Any = "no_validation", *, reset: bool) -> Any:
        """scikit-learn's ``validate_data`` (sets ``n_features_in_``), with tnkit's context on its errors.

        Then the feature range of ``feature_map``: when fitting (``y`` given), negative
        values raise ``ValueError`` (the ``positive_only`` tag); any other value outside
        :attr:`feature_range`, and in ``predict`` and friends every such value, warns
        (test data passed through a scaler fitted on training data may stray a little).
        Returns ``X`` or, when ``y`` is given, ``(X, y)``.
        """
        name = type(self).__name__
        with_y = not (isinstance(y, str) and y == "no_validation")
        try:
            out = validate_data(self, X, y, reset=reset)
        except ValueError as exc:
            what = "`X` (n_samples, n_features) of finite numbers" + (" and `y` (n_samples,)" if with_y else "")
            raise ValueError(f"{name} expects {what}: {exc}") from exc
        X = out[0] if with_y else out
        interval = FEATURE_RANGES[self.feature_map]
        if with_y and interval is not None and interval[0] >= 0 and X.size and X.min() < 0:
            raise ValueError(
                f"Negative values in data passed to {name}: `X` has minimum {X.min():.4g}, and the "
                f"{self.feature_map!r} feature map is meant for features in [{interval[0]:g}, {interval[1]:g}]. "
                "Scale the features first (images: divide by the largest possible pixel value; other "
                "data: sklearn.preprocessing.MinMaxScaler(clip=True))."
            )
        check_feature_range(X, self.feature_map, owner=name)
        return out

    def _fit(self, X: Any, y: Any, *, n_iter: int | None, warm: bool, classes: Any = None) -> TensorNetworkClassifierBase:
        self._check_params()
        warm = warm and hasattr(self, "classes_")
        X, y = self._validated_X(X, y, reset=not warm)
        check_classification_targets(y)
        if not warm:
            self.classes_ = np.unique(y if classes is None else np.asarray(classes))
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(f"`y` has labels {unknown.tolist()} not in `classes_` {self.classes_.tolist()}.")
        Y = (np.asarray(y)[:, None] == self.classes_[None, :]).astype(float)
        phi = self._embed(X)
        rng = as_generator(self.random_state)
        with blas_threads(self.max_bond or 1):
            if not warm:
                self.history_ = []
                self._init_model(phi, Y, rng)
            self.history_ = self.history_ + self._train(phi, Y, n_iter, rng)
        return self

    def fit(self, X: Any, y: Any) -> TensorNetworkClassifierBase:
        """Train on ``X`` (n_samples, n_features) and labels ``y`` (n_samples,).

        With ``warm_start=True`` and a fitted model, training continues from it.
        """
        return self._fit(X, y, n_iter=None, warm=self.warm_start)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> TensorNetworkClassifierBase:
        """One more sweep (or epoch) on ``X, y``, from the current model if there is one.

        ``classes`` must list every label on the first call if ``y`` lacks some.
        """
        return self._fit(X, y, n_iter=1, warm=True, classes=classes)

    def decision_function(self, X: Any) -> np.ndarray:
        """Direction ``u = f / ||f||`` of the contraction ``f`` of the model with each sample's product state.

        Returns
        -------
        numpy.ndarray, shape (n_samples, n_classes), or (n_samples,) for two classes
            Entries in ``[-1, 1]``; for two classes, ``u_1 - u_0`` (positive means ``classes_[1]``).
        """
        f = self._raw_decision(X)
        return f[:, 1] - f[:, 0] if f.shape[1] == 2 else f

    def _raw_decision(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = self._validated_X(X, reset=False)
        with blas_threads(self.max_bond or 1):
            return self._decision(self._embed(X))

    def predict(self, X: Any) -> np.ndarray:
        """Class with the largest output ``f_k(x)`` (the same as the largest ``u_k``)."""
        f = self._raw_decision(X)
        return self.classes_[np.argmax(f, axis=1)]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities: softmax of the decision function (times ``temperature`` for the MPS).

        For cross-entropy models these are the trained probabilities. Squared-loss
        models fit the unit output direction ``u`` to the one-hot label, so their
        softmax is not a calibrated probability; it keeps the order (``predict`` is
        the arg-max of both). Wrap such a model in
        ``sklearn.calibration.CalibratedClassifierCV`` when calibrated probabilities matter.
        """
        return softmax(self._logit_scale() * self._raw_decision(X))

    def _logit_scale(self) -> float:
        """Factor between the decision function and the softmax logits."""
        return 1.0

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """``log(predict_proba(X))``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    # ------------------------------------------------------------------ save / load

    def save(self, path: Any) -> Any:
        """Write the fitted model to a schema-versioned ``.npz`` (no pickle); returns the path."""
        check_is_fitted(self)
        params = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else None)
                  for k, v in self.get_params().items()}
        tensors, meta = self._model_arrays()
        meta = dict(meta, params=json.dumps(params), classes=np.asarray(self.classes_),
                    n_features_in=self.n_features_in_, history=json.dumps(self.history_))
        if np.asarray(self.classes_).dtype == object:
            meta["classes"] = np.asarray(self.classes_).astype(str)
        return save_arrays(path, self._kind, tensors, meta)

    @classmethod
    def load(cls, path: Any) -> TensorNetworkClassifierBase:
        """Read a model written by :meth:`save` (loading never executes code)."""
        tensors, meta = load_arrays(path, cls._kind)
        model = cls(**json.loads(str(meta["params"])))
        model.classes_ = meta["classes"]
        model.n_features_in_ = int(meta["n_features_in"])
        model.history_ = json.loads(str(meta["history"]))
        model._restore_model(tensors, meta)
        return model
