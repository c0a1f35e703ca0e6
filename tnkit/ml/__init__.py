"""Machine learning with tensor networks: classifiers and generative models.

Estimators follow scikit-learn's conventions (``fit``/``predict``/``score``,
``get_params``/``set_params``, ``random_state``). Each estimator lives in its own
module and is imported on first use, so ``import tnkit.ml`` stays light.

- :class:`MPSClassifier` (``tnkit.ml.mps_classifier``): Stoudenmire & Schwab (2016).
- :class:`TTNClassifier` (``tnkit.ml.ttn_classifier``): Huggins et al. (2019).
- :class:`MPSBornMachine` (``tnkit.ml.born_machine``): Han et al. (2018).
- :class:`TTNBornMachine` (``tnkit.ml.ttn_born_machine``): Cheng et al. (2019), tree Born machine.

Around them: ``tnkit.ml.explain`` (anomaly scores, per-feature explanations,
entanglement and mutual information of a fitted Born machine), ``tnkit.ml.feature_maps``,
``tnkit.ml.environments`` (batched environments of an MPS against product inputs),
``tnkit.ml.plots``, and ``tnkit.datasets`` for the data.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> module that defines it (imported lazily by ``__getattr__``).
_LAZY = {
    "MPSClassifier": "tnkit.ml.mps_classifier",
    "TTNClassifier": "tnkit.ml.ttn_classifier",
    "MPSBornMachine": "tnkit.ml.born_machine",
    "TTNBornMachine": "tnkit.ml.ttn_born_machine",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tnkit.ml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
