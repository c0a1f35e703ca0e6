"""Random token-id batches for the tiny models' tests (vocabulary 256)."""

from __future__ import annotations

import numpy as np

import tnkit.compress as tc


def random_token_batches(rng_seed: int, n_ids: int, *, seq_len: int, n_batches: int, batch_size: int = 4,
                         seed: int | None = 0) -> list:
    """``n_batches`` batches ``(batch_size, seq_len)`` cut from ``n_ids`` uniform ids of generator ``rng_seed``.

    ``seed`` chooses the windows (:func:`tnkit.compress.token_batches`).
    """
    ids = np.random.default_rng(rng_seed).integers(0, 256, n_ids)
    return tc.token_batches(ids, seq_len=seq_len, batch_size=batch_size, n_batches=n_batches, seed=seed)
