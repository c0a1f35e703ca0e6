"""Former name of :mod:`tnkit.describe` (it shadowed the standard library's ``inspect``).

Importing it warns (``FutureWarning``) and re-exports :mod:`tnkit.describe`; it
will be removed. The command is still ``tnkit inspect PATH``.
"""

from __future__ import annotations

import warnings

from .describe import *  # noqa: F403
from .describe import __all__  # noqa: F401

warnings.warn(
    "tnkit.inspect is now tnkit.describe (the old name shadowed the standard library's inspect); "
    "import from there (the old name will be removed).",
    FutureWarning,
    stacklevel=2,
)
