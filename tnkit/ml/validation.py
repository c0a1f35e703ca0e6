"""One validator for the hyper-parameters of the tnkit estimators: declared rules, checked before any work.

An estimator declares, for each constructor parameter it checks, a *rule*: a function
``(name, value) -> None`` that raises a ``TypeError`` (wrong type) or ``ValueError``
(wrong value, :class:`tnkit.errors.OptionError` for an unknown option) naming the
parameter, what was expected and what was given. :func:`check_params` applies a
mapping ``{parameter name: rule}`` to an estimator's attributes. The rule builders
below wrap the engine's checks (:mod:`tnkit.core.validate`), so every estimator applies
the same rules with the same messages:

- :func:`integer`: an integer (not a bool) ``>= minimum``;
- :func:`number`: a finite real ``> 0``, or ``>= 0`` with ``positive=False`` (and at
  most ``maximum`` if given);
- :func:`boolean`: True or False (numpy booleans too);
- :func:`instance`: an instance of a class;
- :func:`option`: one of a collection of names (a registry's keys);
- :func:`bond`: a bond-dimension cap, None (no cap) or an integer ``>= 1``;
- :func:`fraction`: a relative discarded-weight cutoff in ``[0, 1)``;

each with ``optional=True`` to also accept None (a default chosen by ``fit``).

Examples
--------
>>> from tnkit.ml.validation import check_params, integer, number
>>> class Model:
...     n_epochs, learning_rate = 0, 0.1
>>> check_params(Model(), {"n_epochs": integer(minimum=1), "learning_rate": number()})
Traceback (most recent call last):
ValueError: `n_epochs` must be an integer >= 1, got 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np

from ..core.validate import check_cutoff, check_int, check_max_bond, check_number, check_option

__all__ = [
    "Rule", "check_params", "store_params", "integer", "number", "option", "bond", "fraction", "boolean", "instance",
    "or_auto",
]

#: ``(name, value) -> None``, raising ``TypeError`` or ``ValueError`` that names ``name``.
Rule = Callable[[str, Any], None]


def _optional(rule: Rule, optional: bool) -> Rule:
    if not optional:
        return rule

    def check(name: str, value: Any) -> None:
        if value is not None:
            rule(name, value)

    return check


def integer(*, minimum: int | None = 1, optional: bool = False) -> Rule:
    """Rule: an integer (not a bool) ``>= minimum`` (None too with ``optional``)."""

    def check(name: str, value: Any) -> None:
        check_int(name, value, minimum=minimum)

    return _optional(check, optional)


def or_auto(rule: Rule) -> Rule:
    """Rule: the string ``"auto"`` (the estimator decides from the data), or what ``rule`` accepts."""

    def check(name: str, value: Any) -> None:
        if not (isinstance(value, str) and value == "auto"):
            rule(name, value)

    return check


def number(*, positive: bool = True, maximum: float | None = None, optional: bool = False) -> Rule:
    """Rule: a finite real number ``> 0`` (``>= 0`` if not ``positive``), at most ``maximum`` if given.

    None is accepted too with ``optional``.
    """

    def check(name: str, value: Any) -> None:
        if check_number(name, value, positive=positive) > (math.inf if maximum is None else maximum):
            raise ValueError(f"`{name}` must be at most {maximum}, got {value!r}.")

    return _optional(check, optional)


def boolean() -> Rule:
    """Rule: True or False (a numpy bool too)."""

    def check(name: str, value: Any) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"`{name}` must be True or False, got {value!r}.")

    return check


def instance(cls: type, *, optional: bool = False) -> Rule:
    """Rule: an instance of ``cls`` (None too with ``optional``)."""

    def check(name: str, value: Any) -> None:
        if not isinstance(value, cls):
            expected = f"{cls.__module__}.{cls.__qualname__}" + (" or None" if optional else "")
            raise TypeError(f"`{name}` must be a {expected}, got {type(value).__name__}.")

    return _optional(check, optional)


def option(choices: Collection[object], *, optional: bool = False) -> Rule:
    """Rule: one of ``choices`` (an unknown name raises ``OptionError`` listing the valid ones)."""

    def check(name: str, value: Any) -> None:
        check_option(name, value, choices)

    return _optional(check, optional)


def bond() -> Rule:
    """Rule: a bond-dimension cap, None (no cap) or an integer ``>= 1``."""

    def check(name: str, value: Any) -> None:
        check_max_bond(value, name)

    return check


def fraction() -> Rule:
    """Rule: a relative discarded-weight cutoff, a real number in ``[0, 1)``."""

    def check(name: str, value: Any) -> None:
        check_cutoff(value, name)

    return check


def check_params(estimator: Any, rules: Mapping[str, Rule]) -> None:
    """Apply ``rules`` (parameter name -> rule) to the attributes of ``estimator``, in order.

    Raises
    ------
    TypeError, ValueError
        From the first rule that fails, naming the parameter.
    """
    for name, rule in rules.items():
        rule(name, getattr(estimator, name))


def store_params(estimator: Any, arguments: Mapping[str, Any]) -> None:
    """Set each constructor argument as the attribute of the same name, unchanged.

    scikit-learn's rule for ``__init__`` (no logic, no validation: :func:`check_params`
    runs in ``fit``); call it as ``store_params(self, locals())`` on the first line.
    """
    for name, value in arguments.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)
