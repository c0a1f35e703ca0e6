"""The weights of a compressed model with each low-rank layer as its product, for comparing two compressions.

The streamed compression truncates with only the top eigenvectors of a Gram matrix (LAPACK
``syevr``), ``compress_model`` with all of them (``syevd``): the product ``u @ v`` of a
low-rank layer agrees to rounding, but a pair of factor columns and rows may differ in sign.
"""

from __future__ import annotations

import numpy as np


def dense_state(model) -> dict:
    """``model``'s state dict with each ``LowRankLinear``'s ``u`` and ``v`` replaced by ``weight = u @ v``."""
    from tnkit.compress.layers.lowrank import LowRankLinear

    state = {k: v.detach() for k, v in model.state_dict().items()}
    for name, m in model.named_modules():
        if isinstance(m, LowRankLinear):
            del state[f"{name}.u"], state[f"{name}.v"]
            state[f"{name}.weight"] = m.dense_weight().detach()
    return state


def assert_same_products(a, b, *, rtol: float, atol: float) -> None:
    """Every tensor of :func:`dense_state` of ``a`` and ``b`` agrees; both hold low-rank layers."""
    got, want = dense_state(a), dense_state(b)
    assert got.keys() == want.keys()
    assert any(k.endswith("down_proj.weight") for k in got)
    for k in got:
        np.testing.assert_allclose(got[k].numpy(), want[k].numpy(), rtol=rtol, atol=atol, err_msg=k)
