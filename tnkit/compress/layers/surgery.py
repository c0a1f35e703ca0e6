"""Choosing the linear layers of a transformer and replacing them in place.

A *layer name* is the dotted name of a module in ``model.named_modules()``, such as
``model.layers.3.mlp.down_proj`` (Llama) or ``transformer.h.3.mlp.c_proj`` (GPT-2).
Layers are selected by

* **role**: ``q``, ``k``, ``v``, ``o`` (attention projections; GPT-2's fused
  ``c_attn`` is ``qkv``), ``gate``, ``up``, ``down`` (MLP), or the groups
  ``attention`` and ``mlp``;
* **depth**: the block index parsed from the name (``layers.N`` / ``h.N``), a
  ``range`` or ``(start, stop)`` pair, stop excluded;
* **pattern**: shell-style globs (:mod:`fnmatch`) on the full name.

Only ``nn.Linear`` and transformers' ``Conv1D`` inside numbered blocks are
candidates (the embeddings and the output head are left alone).
``Conv1D`` stores its weight as ``(in, out)``; :func:`linear_weight` always returns
the ``(out, in)`` matrix of ``y = x W^T + b``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from ...errors import OptionError

__all__ = ["ROLES", "ROLE_GROUPS", "linear_weight", "layer_role", "layer_depth", "find_layers",
           "replace_layers", "is_linear"]

#: Role -> last name component(s) in Llama-style and GPT-2-style models.
ROLES = {
    "q": ("q_proj",), "k": ("k_proj",), "v": ("v_proj",), "o": ("o_proj", "attn.c_proj"),
    "qkv": ("c_attn",), "gate": ("gate_proj",), "up": ("up_proj", "c_fc"),
    "down": ("down_proj", "mlp.c_proj"),
}
ROLE_GROUPS = {"attention": ("q", "k", "v", "o", "qkv"), "mlp": ("gate", "up", "down")}
_DEPTH = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")


def is_linear(module: nn.Module) -> bool:
    """Whether ``module`` is an ``nn.Linear`` or a transformers ``Conv1D``."""
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def linear_weight(module: nn.Module) -> torch.Tensor:
    """The ``(out, in)`` weight of an ``nn.Linear``, ``Conv1D`` or compressed layer."""
    if isinstance(module, nn.Linear):
        return module.weight
    if type(module).__name__ == "Conv1D":
        return module.weight.T
    if hasattr(module, "dense_weight"):
        return module.dense_weight()
    raise TypeError(f"expected nn.Linear or Conv1D, got {type(module).__name__}.")


def layer_role(name: str) -> str | None:
    """The role of a layer name (see :data:`ROLES`), or ``None``."""
    for role, suffixes in ROLES.items():
        if any(name == s or name.endswith("." + s) for s in suffixes):
            return role
    return None


def layer_depth(name: str) -> int | None:
    """The block index in a layer name, or ``None`` outside numbered blocks."""
    m = _DEPTH.search(name + ".")
    return int(m.group(1)) if m else None


def _expand_roles(roles: Iterable[str]) -> set[str]:
    out: set[str] = set()
    valid = sorted(set(ROLES) | set(ROLE_GROUPS))
    for r in roles:
        if r in ROLE_GROUPS:
            out.update(ROLE_GROUPS[r])
        elif r in ROLES:
            out.add(r)
        else:
            raise OptionError(f"`roles` entries must be one of {valid}, got {r!r}.")
    return out


def find_layers(
    model: nn.Module,
    *,
    patterns: Sequence[str] | None = None,
    roles: Sequence[str] | None = None,
    depth: range | tuple[int, int] | None = None,
    exclude: Sequence[str] = (),
) -> dict[str, nn.Module]:
    """The linear layers of ``model`` matching every given criterion, in model order.

    Parameters
    ----------
    model : torch.nn.Module
    patterns : sequence of str, optional
        Globs on the full layer name; a layer must match at least one. A pattern that
        matches no candidate layer is an error (a likely typo).
    roles : sequence of str, optional
        Roles or role groups (:data:`ROLES`, :data:`ROLE_GROUPS`).
    depth : range or (start, stop), optional
        Block indices to keep.
    exclude : sequence of str
        Globs of names to leave out.

    Raises
    ------
    tnkit.errors.OptionError
        For an unknown role.
    ValueError
        For a pattern that matches no layer, or when nothing is selected.
    """
    wanted_roles = _expand_roles(roles) if roles is not None else None
    if depth is not None and not isinstance(depth, range):
        start, stop = depth
        depth = range(int(start), int(stop))
    candidates = {n: m for n, m in model.named_modules() if is_linear(m) and layer_depth(n) is not None}
    for pat in patterns or ():
        if not any(fnmatch.fnmatchcase(n, pat) for n in candidates):
            example = next(iter(candidates), "none")
            raise ValueError(f"layer pattern {pat!r} matches no linear layer of the model (e.g. {example!r}).")
    chosen = {}
    for name, module in candidates.items():
        if patterns and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        if wanted_roles is not None and layer_role(name) not in wanted_roles:
            continue
        if depth is not None and layer_depth(name) not in depth:
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in exclude):
            continue
        chosen[name] = module
    if not chosen:
        raise ValueError(f"no layer matches patterns={patterns}, roles={roles}, depth={depth}, exclude={list(exclude)}.")
    return chosen


def replace_layers(model: nn.Module, replacements: Mapping[str, nn.Module]) -> nn.Module:
    """Put each ``replacements[name]`` in place of the submodule ``name``; returns ``model``."""
    for name, new in replacements.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if not hasattr(parent, child):
            raise ValueError(f"`replacements` names {name!r}, which is not a submodule of the model.")
        setattr(parent, child, new)
    return model
