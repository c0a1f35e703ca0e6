"""Former name of :mod:`tnkit.aqc.initial` (it read like the package's ``__init__``).

Importing it warns (``FutureWarning``) and re-exports :mod:`tnkit.aqc.initial`;
it will be removed.
"""

from __future__ import annotations

import warnings

from .initial import *  # noqa: F403
from .initial import __all__  # noqa: F401

warnings.warn(
    "tnkit.aqc.init is now tnkit.aqc.initial; import from there (the old name will be removed).",
    FutureWarning,
    stacklevel=2,
)
