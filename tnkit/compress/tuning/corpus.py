"""Text for calibration, healing and evaluation.

:func:`read_text` reads a plain-text file or every ``.txt``/``.raw`` file of a
directory. :func:`split_articles` splits WikiText at its top-level headings
(`` = Title = ``); :func:`heal_eval_split` gives the project's fixed split of
``wiki.test.raw`` (see ``shared/data/README.md``): articles before
`` = Attalea ( palm ) = `` heal, the rest evaluate, never overlapping.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["read_text", "split_articles", "heal_eval_split", "tokenize", "token_batches", "EVAL_FIRST_HEADING"]

EVAL_FIRST_HEADING = " = Attalea ( palm ) = "
_HEADING = re.compile(r"^ = [^=].* = $", re.M)


def read_text(path: Any) -> str:
    """The text of a file, or of every ``.txt``/``.raw`` file in a directory (sorted, joined).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist, or a directory holds no text file.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"text path {str(p)!r} does not exist.")
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix in (".txt", ".raw") and f.is_file())
        if not files:
            raise FileNotFoundError(f"directory {str(p)!r} holds no .txt or .raw file.")
        return "\n".join(f.read_text(encoding="utf-8") for f in files)
    return p.read_text(encoding="utf-8")


def split_articles(text: str) -> list[str]:
    """Split WikiText at top-level headings; each article starts with its heading line."""
    starts = [m.start() for m in _HEADING.finditer(text)]
    if not starts:
        return [text]
    return [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]


def heal_eval_split(text: str) -> tuple[str, str]:
    """``(healing text, evaluation text)`` split at :data:`EVAL_FIRST_HEADING`.

    Raises
    ------
    ValueError
        If the heading is not in ``text`` (not the WikiText-2 test file).
    """
    i = text.find("\n" + EVAL_FIRST_HEADING + "\n")
    if i < 0:
        raise ValueError(f"the text has no heading line {EVAL_FIRST_HEADING!r}: not WikiText-2's test split.")
    return text[: i + 1], text[i + 1 :]


def tokenize(tokenizer: Any, text: str) -> np.ndarray:
    """Token ids of ``text`` as an int64 array (no special tokens added)."""
    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    return np.asarray(ids, dtype=np.int64)


def token_batches(ids: np.ndarray, *, seq_len: int, batch_size: int, n_batches: int | None = None,
                  seed: int | None = None) -> list[Any]:
    """Cut ``ids`` into ``(batch_size, seq_len)`` torch tensors (random windows if ``seed``)."""
    import torch

    ids = np.asarray(ids, dtype=np.int64)
    n_windows = len(ids) // seq_len
    if n_windows < 1:
        raise ValueError(f"need at least `seq_len`={seq_len} tokens, got {len(ids)}.")
    starts = np.arange(n_windows) * seq_len
    if seed is not None:
        starts = np.random.default_rng(seed).permutation(starts)
    if n_batches is not None:
        starts = starts[: n_batches * batch_size]
    windows = [ids[s : s + seq_len] for s in starts]
    return [torch.as_tensor(np.stack(windows[i : i + batch_size])) for i in range(0, len(windows), batch_size)]
