"""Training data for healing: text windows, text the original model writes itself, and mixtures.

Healing a compressed model by distillation needs far more tokens than a text file
holds. The original (teacher) model can write them: following LLM-QAT (Liu et al.,
arXiv:2305.17888), each sequence starts from a token drawn uniformly from the
vocabulary, continues greedily for a few tokens (so it settles on a topic), then
samples from the teacher's next-token distribution, which keeps the text diverse.
Distilling on such text transfers the teacher's distribution where it is actually
used, without any data set.

Every source here is a *stream*: an endless, seeded sequence of rows of
``seq_len + 1`` token ids, addressable by row number (:meth:`TokenStream.row`), so a
healing run that resumes at step ``k`` sees exactly the rows an uninterrupted run
would have seen (the data position is the step; no iterator state to save). Iterating
a stream (``iter(stream)``) yields batches forever: the token budget is not bounded
by a file.

* :class:`TextWindows`: disjoint windows of a token array, reshuffled every epoch;
* :class:`SelfGenerated`: sequences written by the teacher, generated in seeded chunks;
* :class:`MixedStream`: a fixed fraction of rows from one stream, the rest from another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from torch import nn

from ...core.validate import check_int, check_number

__all__ = ["TokenStream", "TextWindows", "SelfGenerated", "MixedStream", "self_generate", "distillation_stream"]


class TokenStream:
    """An endless, seeded sequence of rows of ``seq_len + 1`` token ids.

    Subclasses implement :meth:`row` (pure in the row number) and :meth:`fingerprint`
    (what a resumed run must match to see the same data).
    """

    seq_len: int

    def row(self, index: int) -> np.ndarray:
        """Row ``index`` (int64, shape ``(seq_len + 1,)``)."""
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        """JSON-ready description; equal fingerprints give equal rows."""
        raise NotImplementedError

    def rows(self, start: int, count: int) -> np.ndarray:
        """Rows ``start, ..., start + count - 1`` stacked, shape ``(count, seq_len + 1)``."""
        return np.stack([self.row(start + k) for k in range(count)])

    def batch(self, step: int, batch_size: int) -> torch.Tensor:
        """The ``(batch_size, seq_len + 1)`` batch of training step ``step`` (rows ``step * batch_size`` on)."""
        return torch.as_tensor(self.rows(step * batch_size, batch_size))

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Batches of 8 rows, forever."""
        step = 0
        while True:
            yield self.batch(step, 8)
            step += 1


class TextWindows(TokenStream):
    """Disjoint windows of ``seq_len + 1`` tokens of ``ids``, in a seeded order reshuffled every epoch.

    Parameters
    ----------
    ids : array_like of int, shape (n,)
    seq_len : int
        Predicted positions per row (rows hold ``seq_len + 1`` ids).
    seed : int
    """

    def __init__(self, ids: Any, *, seq_len: int, seed: int = 0) -> None:
        self.seq_len = check_int("seq_len", seq_len, minimum=1)
        self.ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        self.n_windows = len(self.ids) // (self.seq_len + 1)
        if self.n_windows < 1:
            raise ValueError(f"healing text too short: {len(self.ids)} tokens give no window of "
                             f"{self.seq_len + 1} (`seq_len` + 1).")
        self.seed = int(seed)
        self._order: tuple[int, np.ndarray] | None = None

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._order = (epoch, rng.permutation(self.n_windows))
        return self._order[1]

    def row(self, index: int) -> np.ndarray:
        epoch, k = divmod(int(index), self.n_windows)
        start = int(self._epoch_order(epoch)[k]) * (self.seq_len + 1)
        return self.ids[start : start + self.seq_len + 1]

    def fingerprint(self) -> dict[str, Any]:
        return {"source": "text", "tokens": len(self.ids), "seq_len": self.seq_len, "seed": self.seed,
                "sha256": hashlib.sha256(self.ids.tobytes()).hexdigest()[:16]}


def self_generate(teacher: nn.Module, n: int, *, length: int, greedy_tokens: int = 3, temperature: float = 1.0,
                  seed: int = 0, first_tokens: Any = None, device: Any = None) -> torch.Tensor:
    """``n`` sequences of ``length`` tokens written by ``teacher`` (LLM-QAT recipe).

    Token 0 is drawn uniformly from ``first_tokens`` (default: the whole vocabulary),
    the next ``greedy_tokens`` are the teacher's most likely ones, the rest are sampled
    from its next-token distribution at ``temperature``. Deterministic for a given
    ``seed`` (its own ``torch.Generator``; the global RNG is untouched).

    Returns
    -------
    torch.Tensor
        int64, shape ``(n, length)``, on the CPU.
    """
    n = check_int("n", n, minimum=1)
    length = check_int("length", length, minimum=2)
    greedy_tokens = check_int("greedy_tokens", greedy_tokens, minimum=0)
    temperature = check_number("temperature", temperature)
    device = torch.device(device) if device is not None else next(teacher.parameters()).device
    vocab = int(teacher.config.vocab_size) if first_tokens is None else None
    gen = torch.Generator(device=device).manual_seed(int(seed))
    if first_tokens is None:
        ids = torch.randint(0, vocab, (n, 1), generator=gen, device=device)
    else:
        pool = torch.as_tensor(np.asarray(first_tokens, dtype=np.int64), device=device)
        ids = pool[torch.randint(0, len(pool), (n, 1), generator=gen, device=device)]
    was_training = teacher.training
    teacher.eval()
    past, step_input, key = None, ids, _cache_argument(teacher)
    try:
        with torch.no_grad(), _autocast(device):
            for t in range(1, length):
                out = teacher(input_ids=step_input, use_cache=True, **{key: past})
                past = out.get(key)
                logits = out.logits[:, -1].float()
                if t <= greedy_tokens:
                    nxt = logits.argmax(-1, keepdim=True)
                else:
                    probs = torch.softmax(logits / temperature, dim=-1)
                    nxt = torch.multinomial(probs, 1, generator=gen)
                ids = torch.cat([ids, nxt], dim=1)
                step_input = nxt
    finally:
        teacher.train(was_training)
    return ids.cpu()


def _cache_argument(model: nn.Module) -> str:
    """Name of the key/value cache argument (and output) of ``model.forward``: ``cache`` in transformers >= 5.2x."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _autocast(device: torch.device) -> Any:
    """bf16 autocast on a GPU, nothing on the CPU."""
    import contextlib

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class SelfGenerated(TokenStream):
    """Rows written by the teacher (:func:`self_generate`), made ``chunk`` at a time.

    Chunk ``c`` (rows ``c * chunk`` to ``(c + 1) * chunk - 1``) is generated with seed
    ``(seed, c)``, so any row can be produced again on resume. Generating at batch
    ``chunk`` uses the hardware far better than one sequence at a time.

    Parameters
    ----------
    teacher : causal LM
        The original, uncompressed model (used under ``no_grad`` in eval mode).
    seq_len : int
        Rows hold ``seq_len + 1`` tokens.
    greedy_tokens : int
        Greedy tokens after the random first one (LLM-QAT uses 3 to 5).
    temperature : float
    chunk : int
        Sequences generated together.
    seed : int
    first_tokens : array_like of int, optional
        Ids the first token is drawn from (default: the whole vocabulary).
    """

    def __init__(self, teacher: nn.Module, *, seq_len: int, greedy_tokens: int = 3, temperature: float = 1.0,
                 chunk: int = 16, seed: int = 0, first_tokens: Any = None) -> None:
        self.teacher = teacher
        self.seq_len = check_int("seq_len", seq_len, minimum=1)
        self.greedy_tokens = check_int("greedy_tokens", greedy_tokens, minimum=0)
        self.temperature = check_number("temperature", temperature)
        self.chunk = check_int("chunk", chunk, minimum=1)
        self.seed = int(seed)
        self.first_tokens = None if first_tokens is None else np.asarray(first_tokens, dtype=np.int64)
        self._cache: tuple[int, np.ndarray] | None = None
        self.generated_tokens = 0

    def _chunk(self, c: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != c:
            seq = self_generate(self.teacher, self.chunk, length=self.seq_len + 1, greedy_tokens=self.greedy_tokens,
                                temperature=self.temperature, seed=self.seed * 1_000_003 + c,
                                first_tokens=self.first_tokens)
            self.generated_tokens += seq.numel()
            self._cache = (c, seq.numpy())
        return self._cache[1]

    def row(self, index: int) -> np.ndarray:
        c, k = divmod(int(index), self.chunk)
        return self._chunk(c)[k]

    def fingerprint(self) -> dict[str, Any]:
        return {"source": "self-generated", "seq_len": self.seq_len, "greedy_tokens": self.greedy_tokens,
                "temperature": self.temperature, "chunk": self.chunk, "seed": self.seed,
                "first_tokens": None if self.first_tokens is None else len(self.first_tokens)}


class MixedStream(TokenStream):
    """``fraction`` of the rows from ``other``, the rest from ``main``, evenly interleaved.

    Row ``j`` comes from ``other`` when ``floor((j + 1) f) > floor(j f)`` (``f`` the
    fraction as an exact ratio), so any prefix of ``m`` rows holds ``floor(m f)`` of
    them: the mixture is the same in every stretch of the run, and each source is read
    in its own order.
    """

    def __init__(self, main: TokenStream, other: TokenStream, *, fraction: float) -> None:
        if main.seq_len != other.seq_len:
            raise ValueError(f"the two streams must share `seq_len`, got {main.seq_len} and {other.seq_len}.")
        fraction = float(fraction)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"`fraction` must lie in [0, 1], got {fraction}.")
        self.main, self.other, self.seq_len = main, other, main.seq_len
        self.ratio = Fraction(fraction).limit_denominator(1000)

    def _taken(self, m: int) -> int:
        """Rows among the first ``m`` that come from ``other``."""
        return m * self.ratio.numerator // self.ratio.denominator

    def row(self, index: int) -> np.ndarray:
        j = int(index)
        before = self._taken(j)
        if self._taken(j + 1) > before:
            return self.other.row(before)
        return self.main.row(j - before)

    def fingerprint(self) -> dict[str, Any]:
        return {"source": "mixed", "fraction": str(self.ratio), "main": self.main.fingerprint(),
                "other": self.other.fingerprint()}


def distillation_stream(teacher: nn.Module, *, seq_len: int, text_ids: Any = None, text_fraction: float = 0.25,
                        greedy_tokens: int = 3, temperature: float = 1.0, chunk: int = 16,
                        seed: int = 0) -> TokenStream:
    """Self-generated text from ``teacher``, mixed with ``text_ids`` (a ``text_fraction`` of the rows) if given."""
    generated = SelfGenerated(teacher, seq_len=seq_len, greedy_tokens=greedy_tokens, temperature=temperature,
                              chunk=chunk, seed=seed)
    if text_ids is None or text_fraction == 0:
        return generated
    return MixedStream(generated, TextWindows(text_ids, seq_len=seq_len, seed=seed), fraction=text_fraction)

