"""Registry of contraction-path optimizers.

A strategy is named by a lowercase string and resolves to something
:func:`opt_einsum.contract_path` accepts as ``optimize``. ``optimize=`` in tnkit also
takes an explicit path (a sequence of index tuples) or an
:class:`opt_einsum.paths.PathOptimizer` instance.

========================  =====================================================
name                      planner
========================  =====================================================
``"auto"``                opt_einsum's size-based choice (exact for few operands)
``"greedy"``              opt_einsum greedy
``"optimal"``             exhaustive search (small networks only)
``"dp"``                  dynamic programming (opt_einsum ``"dynamic-programming"``)
``"branch-2"``            branch and bound, two branches per step
``"random-greedy"``       randomized greedy, best of several trials
``"cotengra"``            cotengra hyper-optimizer (optional, for large networks)
========================  =====================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import OptionError

__all__ = ["register_optimizer", "get_optimizer", "available_optimizers"]

_REGISTRY: dict[str, Callable[[], Any]] = {}


def register_optimizer(name: str, factory: Callable[[], Any]) -> None:
    """Register ``factory`` (no arguments, returns an opt_einsum ``optimize`` value) as ``name``.

    Raises
    ------
    OptionError
        If ``name`` is already registered.
    """
    if name in _REGISTRY:
        raise OptionError(f"contraction optimizer {name!r} is already registered.")
    _REGISTRY[name] = factory


def get_optimizer(name: str) -> Any:
    """Return the opt_einsum ``optimize`` value registered as ``name``.

    Raises
    ------
    OptionError
        If ``name`` is unknown; the message lists the valid names.
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise OptionError(
            f"`optimize` must be one of {sorted(_REGISTRY)} (or an explicit path or a "
            f"PathOptimizer), got {name!r}."
        ) from None
    return factory()


def available_optimizers() -> list[str]:
    """Names of the registered contraction-path optimizers."""
    return sorted(_REGISTRY)


def _cotengra_optimizer() -> Any:
    try:
        import cotengra as ctg
    except ImportError as exc:  # pragma: no cover - cotengra ships with quimb
        raise ImportError(
            "optimize='cotengra' needs the cotengra package: pip install cotengra"
        ) from exc
    import importlib.util

    # Without kahypar, cotengra warns and falls back to these; name them so it need not.
    methods = None if importlib.util.find_spec("kahypar") else ["greedy", "labels"]
    return ctg.HyperOptimizer(methods=methods, max_repeats=32, parallel=False, progbar=False)


for _name, _value in [
    ("auto", "auto"),
    ("greedy", "greedy"),
    ("optimal", "optimal"),
    ("dp", "dynamic-programming"),
    ("branch-2", "branch-2"),
    ("random-greedy", "random-greedy"),
]:
    register_optimizer(_name, lambda v=_value: v)
register_optimizer("cotengra", _cotengra_optimizer)
