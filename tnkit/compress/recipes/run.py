"""The ``tnkit compress`` recipe as a library function: load, compress, heal, evaluate, save.

:func:`run_compress` takes one :class:`CompressSettings` (with an optional
:class:`HealSettings`), checks everything that can be checked before the model is
loaded (the output directory, a healing checkpoint, a sensitivity profile), then

1. loads the model (:func:`tnkit.compress.load_model`) and picks its layers;
2. measures the original on the evaluation text, if any;
3. compresses (:func:`tnkit.compress.compress_model`), on calibration text when the
   method needs data;
4. heals (:func:`run_heal`, i.e. :func:`tnkit.compress.heal`) and measures again;
5. saves (:func:`tnkit.compress.save_compressed`) with ``report.json`` beside it.

The command line ``tnkit compress`` only turns its options into these settings and
prints what the recipe logs, so Python users get the same result::

    from tnkit.compress import CompressSettings, HealSettings, run_compress

    run = run_compress(CompressSettings(model="SmolLM2", out="smol-70", ratio=0.7,
                                        heal=HealSettings(text="wiki.train.raw")))
    print(run.summary)

Text files: a WikiText-2 file is cut into its healing and evaluation articles
(:func:`tnkit.compress.heal_eval_split`); healing and calibration read the first part,
evaluation the second.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.validate import check_int, check_number, check_option

__all__ = [
    "HealSettings", "CompressSettings", "CompressRun", "run_compress", "run_heal", "check_compress_settings",
    "read_token_ids", "select_layers", "HEAL_DATA", "HEAL_DEVICES", "CHECKPOINT_SUBDIR", "DEFAULT_RATIO",
    "CALIB_TOKENS",
]

#: Healing data: windows of a text, text the original model writes itself, or both.
HEAL_DATA = ("text", "self", "mix")

#: Where healing runs: ``auto`` is a CUDA GPU when one is available, else the CPU.
HEAL_DEVICES = ("auto", "cpu", "cuda")

#: Where :func:`run_compress` keeps its healing checkpoint, inside ``out``.
CHECKPOINT_SUBDIR = "heal_checkpoint"

#: The kept fraction of the compressed layers' weights when neither ``ratio`` nor ``max_bond`` is given.
DEFAULT_RATIO = 0.8
#: default calibration tokens of ``tnkit compress`` (``CompressSettings.calib_tokens``): 13 windows of 4 x 256
#: tokens, i.e. 12,288 tokens of statistics and one held-out batch for method ``"auto"`` (on SmolLM2 at 70% kept:
#: 42.5 proxy perplexity against 41.6 with 16,384 tokens of statistics, for three quarters of the statistics pass)
CALIB_TOKENS = 13 * 4 * 256

#: Generated tokens timed by each evaluation of :func:`run_compress`.
SPEED_TOKENS = 8


def _fraction(name: str, value: Any) -> float:
    number = check_number(name, value)
    if number > 1.0:
        raise ValueError(f"`{name}` must be a fraction in (0, 1], got {value!r}.")
    return number


def _optional(check: Callable[..., Any], name: str, value: Any, **kwargs: Any) -> Any:
    return None if value is None else check(name, value, **kwargs)


def _strings(name: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"`{name}` must be a sequence of strings, got {value!r}.")
    return tuple(value)


@dataclass(frozen=True)
class HealSettings:
    """How :func:`run_compress` heals (``tnkit compress --heal-*``), checked on construction.

    Parameters
    ----------
    data : {"text", "self", "mix"}
        ``text``: windows of ``text``; ``self``: text the original model writes itself
        (first token random, then greedy, then sampled; unbounded); ``mix``: ``self``
        plus ``text_fraction`` of the rows from ``text``.
    text : str or Path, optional
        Plain-text file or directory to heal on (needed by ``text`` and ``mix``); a
        WikiText-2 test file is cut to its healing articles, never the evaluation ones.
        It is also the calibration text when :attr:`CompressSettings.calib_text` is not given.
    text_fraction : float
        ``mix``: fraction of rows taken from ``text``, in (0, 1].
    greedy_tokens : int
        Self-generated text: greedy tokens after the random first one, >= 0.
    tokens : int
        Healing token budget, >= 1.
    seconds : float, optional
        Wall-time cap in seconds, > 0.
    batch_size : int
        Rows per step, >= 1.
    lr : float
        AdamW learning rate, > 0.
    loss : {"lm", "kl"}, optional
        Next-token cross-entropy, or distillation from the original model (which then
        stays in memory). Default: ``kl`` for ``self`` and ``mix``, else ``lm``.
    checkpoint_every : int
        Steps between checkpoints, written to ``out/heal_checkpoint``, >= 1.
    resume : bool
        Continue the run checkpointed there; without it an existing checkpoint is an
        error, never overwritten.
    device : {"auto", "cpu", "cuda"}
        Where to heal (``auto``: a CUDA GPU when available, with bf16 autocast).
    gradient_checkpointing : bool
        Recompute activations in the backward pass: less memory, about 30% more time.
    """

    data: str = "text"
    text: str | Path | None = None
    text_fraction: float = 0.25
    greedy_tokens: int = 3
    tokens: int = 100_000
    seconds: float | None = None
    batch_size: int = 4
    lr: float = 1e-4
    loss: str | None = None
    checkpoint_every: int = 50
    resume: bool = False
    device: str = "auto"
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        from ..tuning.healing import HEAL_LOSSES

        check_option("data", self.data, HEAL_DATA)
        if self.data in ("text", "mix") and self.text is None:
            raise ValueError(f"healing data {self.data!r} needs `text` (a text file or directory to heal on).")
        _fraction("text_fraction", self.text_fraction)
        check_int("greedy_tokens", self.greedy_tokens, minimum=0)
        check_int("tokens", self.tokens, minimum=1)
        _optional(check_number, "seconds", self.seconds)
        check_int("batch_size", self.batch_size, minimum=1)
        check_number("lr", self.lr)
        if self.loss is not None:
            check_option("loss", self.loss, HEAL_LOSSES)
        check_int("checkpoint_every", self.checkpoint_every, minimum=1)
        check_option("device", self.device, HEAL_DEVICES)

    @property
    def loss_name(self) -> str:
        """The loss used: ``loss``, or its default for ``data``."""
        if self.loss is not None:
            return self.loss
        return "kl" if self.data in ("self", "mix") else "lm"

    @property
    def needs_teacher(self) -> bool:
        """Whether healing needs an uncompressed copy of the model (distillation or self-generated text)."""
        return self.loss_name == "kl" or self.data in ("self", "mix")


@dataclass(frozen=True)
class CompressSettings:
    """Every option of :func:`run_compress` (and of ``tnkit compress``), checked on construction.

    Parameters
    ----------
    model : str or Path
        A Hugging Face model directory, a directory written by ``tnkit compress``, or a
        ``.gguf`` file (see :func:`tnkit.compress.load_model`).
    out : str or Path
        Directory to write the compressed model to (checked writable before loading).
    gguf : str, optional
        Name of the GGUF file inside a ``model`` directory holding one.
    cache : bool
        Load a GGUF model through its dequantised copy (seconds instead of a minute).
    method : str
        One of :data:`tnkit.compress.METHODS` (see :func:`tnkit.compress.compress_model`).
    ratio : float, optional
        Fraction in (0, 1] of the compressed layers' weights to keep; default
        :data:`DEFAULT_RATIO` unless ``max_bond`` is given (not both).
    max_bond : int, optional
        Single-family methods: the bond (or rank) of every layer.
    families : sequence of str, optional
        Candidates of the search besides dense (:data:`tnkit.compress.FAMILIES`).
    prune, allocation, ridge, sequential, feedback_ridge
        As in :func:`tnkit.compress.compress_model`.
    profile : str or Path, optional
        A ``profile.json`` written by ``tnkit profile``: its sensitivity rows weight the
        allocation instead of the gradient sensitivity.
    protect_above : float, optional
        With ``profile``: keep dense the layers whose unit multiplied the perplexity by
        more than this.
    layers, roles, depth, exclude
        Which linear layers to compress (see :func:`tnkit.compress.find_layers`: shell
        globs, roles, blocks ``start <= index < stop``, globs to leave dense); default:
        every linear layer in the blocks.
    calib_text : str or Path, optional
        Text for the activation statistics; default: the healing text, else ``eval_text``.
    calib_tokens : int
        Calibration tokens, >= 1 (default ``CALIB_TOKENS``, 13,312: method ``"auto"`` measures its
        activation statistics on all but the held-out batch and scores its candidates on that one).
    seq_len : int
        Tokens per calibration and healing window, >= 2.
    stats_precision : {"float32", "bfloat16"}, optional
        Precision of method ``"auto"``'s statistics, sensitivity and held-out passes (``compress_model``'s
        ``stats_precision``; default: bfloat16 where the CPU multiplies it natively).
    heal : HealSettings, optional
        Heal after compressing (off when ``None``).
    eval_text : str or Path, optional
        Text for the perplexity before and after (off when ``None``).
    eval_tokens : int, optional
        Evaluate on the first ``eval_tokens`` tokens only, >= 2.
    window, stride : int
        Perplexity sliding window and its step, in tokens.
    progress : bool
        Show progress bars.
    save_dtype : {"auto", "float32", "bfloat16", "float16"}
        Precision of the saved model; ``"auto"``: the input's (:func:`tnkit.compress.stored_dtype`:
        a bfloat16 checkpoint stays bfloat16, a GGUF file gives float32). The compression and
        healing compute in float32; the compressed model's perplexities are measured with its
        weights rounded to this precision (:func:`tnkit.compress.round_weights`), so they are
        the saved model's.
    """

    model: str | Path
    out: str | Path
    gguf: str | None = None
    cache: bool = True
    method: str | None = None
    ratio: float | None = None
    max_bond: int | None = None
    families: Sequence[str] | None = None
    prune: float | None = None
    allocation: str | None = None
    ridge: float | None = None
    sequential: bool | None = None
    feedback_ridge: float | None = None
    profile: str | Path | None = None
    protect_above: float | None = None
    layers: Sequence[str] | None = None
    roles: Sequence[str] | None = None
    depth: tuple[int, int] | None = None
    exclude: Sequence[str] = ()
    calib_text: str | Path | None = None
    calib_tokens: int = CALIB_TOKENS
    seq_len: int = 256
    stats_precision: str | None = None
    heal: HealSettings | None = None
    eval_text: str | Path | None = None
    eval_tokens: int | None = None
    window: int = 512
    stride: int = 256
    progress: bool = True
    save_dtype: str = "auto"

    def __post_init__(self) -> None:
        from .methods import ALLOCATIONS, DEFAULT_METHOD, METHODS
        from ..numerics.search import FAMILIES

        for name in ("model", "out"):
            if not isinstance(getattr(self, name), (str, Path)):
                raise TypeError(f"`{name}` must be a path (str or Path), got {getattr(self, name)!r}.")
        if self.method is None:
            object.__setattr__(self, "method", DEFAULT_METHOD)
        check_option("method", self.method, METHODS)
        if self.ratio is not None and self.max_bond is not None:
            raise ValueError("give `ratio` or `max_bond`, not both.")
        if self.ratio is None and self.max_bond is None:
            object.__setattr__(self, "ratio", DEFAULT_RATIO)
        _optional(_fraction, "ratio", self.ratio)
        _optional(check_int, "max_bond", self.max_bond, minimum=1)
        families = _strings("families", self.families)
        for family in families or ():
            check_option("families", family, FAMILIES)
        object.__setattr__(self, "families", families)
        _optional(_fraction, "prune", self.prune)
        if self.allocation is not None:
            check_option("allocation", self.allocation, ALLOCATIONS)
        _optional(check_number, "ridge", self.ridge, positive=False)
        _optional(check_number, "feedback_ridge", self.feedback_ridge, positive=False)
        if self.sequential is not None and not isinstance(self.sequential, bool):
            raise TypeError(f"`sequential` must be True, False or None, got {self.sequential!r}.")
        _optional(check_number, "protect_above", self.protect_above)
        if self.protect_above is not None and self.profile is None:
            raise ValueError("`protect_above` needs `profile` (a profile.json written by `tnkit profile`).")
        object.__setattr__(self, "layers", _strings("layers", self.layers))
        object.__setattr__(self, "roles", _strings("roles", self.roles))
        object.__setattr__(self, "exclude", _strings("exclude", self.exclude) or ())
        if self.depth is not None:
            if len(self.depth) != 2:
                raise ValueError(f"`depth` must be (start, stop), got {self.depth!r}.")
            object.__setattr__(self, "depth", tuple(check_int("depth", d) for d in self.depth))
        check_int("calib_tokens", self.calib_tokens, minimum=1)
        check_int("seq_len", self.seq_len, minimum=2)
        if self.stats_precision is not None:
            from ..calibrate.calibration import STATS_PRECISIONS

            check_option("stats_precision", self.stats_precision, STATS_PRECISIONS)
        from ..storage.models import SAVE_DTYPE_NAMES

        check_option("save_dtype", self.save_dtype, ("auto", *SAVE_DTYPE_NAMES))
        if self.heal is not None and not isinstance(self.heal, HealSettings):
            raise TypeError(f"`heal` must be HealSettings or None, got {type(self.heal).__name__}.")
        _optional(check_int, "eval_tokens", self.eval_tokens, minimum=2)
        check_int("window", self.window, minimum=2)
        check_int("stride", self.stride, minimum=1)
        for name in ("eval_text", "calib_text", "profile"):
            value = getattr(self, name)
            if value is not None and not Path(value).exists():
                flag = "--" + name.replace("_", "-")
                raise FileNotFoundError(f"`{name}` ({flag}): {str(value)!r} does not exist.")

    @property
    def selects_layers(self) -> bool:
        """Whether any layer-selection option was given."""
        return bool(self.layers or self.roles or self.depth or self.exclude)

    @property
    def text_for_calibration(self) -> str | Path | None:
        """``calib_text``, else the healing text, else ``eval_text``."""
        if self.calib_text is not None:
            return self.calib_text
        heal_text = None if self.heal is None else self.heal.text
        return heal_text if heal_text is not None else self.eval_text


@dataclass
class CompressRun:
    """What :func:`run_compress` did.

    Attributes
    ----------
    result : CompressionResult
        The compression (per-layer reports, parameters before and after).
    reports : list of EvalReport
        ``original``, ``METHOD`` and ``METHOD+heal`` measurements (those that ran).
    heal : HealResult or None
        The healing run, if any.
    out : Path
        The saved model's directory.
    summary : str
        The one-screen summary ``tnkit compress`` prints.
    seconds : float
        Wall time of the whole recipe.
    """

    result: Any
    reports: list
    heal: Any
    out: Path
    summary: str
    seconds: float


def read_token_ids(tokenizer: Any, path: str | Path | None, part: str) -> Any:
    """Token ids of a text file or directory (``None`` for ``None``).

    A WikiText-2 file is cut into its healing and evaluation articles, and ``part``
    (``"heal"`` or ``"eval"``) picks one.
    """
    from ..tuning.corpus import EVAL_FIRST_HEADING, heal_eval_split, read_text, tokenize

    check_option("part", part, ("heal", "eval"))
    if path is None:
        return None
    if tokenizer is None:
        raise ValueError("the model has no tokenizer, so text cannot be tokenised.")
    text = read_text(path)
    if EVAL_FIRST_HEADING in text:
        text = heal_eval_split(text)[0 if part == "heal" else 1]
    return tokenize(tokenizer, text)


def select_layers(model: Any, *, layers: Any = None, roles: Any = None, depth: Any = None, exclude: Any = ()) -> Any:
    """The linear layers to compress (:func:`tnkit.compress.find_layers` with these filters)."""
    from ..layers.surgery import find_layers

    return find_layers(model, patterns=layers, roles=roles, depth=tuple(depth) if depth else None, exclude=exclude)


def check_compress_settings(settings: CompressSettings) -> tuple[Path, list | None]:
    """The checks of :func:`run_compress` that read the disk, all before the model is loaded.

    Returns
    -------
    out : Path
        The output directory (checked writable).
    profile_rows : list of ProfileRow or None
        The sensitivity rows of ``settings.profile``.
    """
    from ..storage.serialize import check_output_dir
    from ..tuning.healing import read_checkpoint_state, resolve_device
    from .sensitivity import ProfileRow

    out = check_output_dir(settings.out)
    heal = settings.heal
    if heal is not None:
        resolve_device(heal.device)
        if heal.text is not None and not Path(heal.text).exists():
            raise FileNotFoundError(f"`heal.text` (--heal-text): {str(heal.text)!r} does not exist.")
        state = read_checkpoint_state(out / CHECKPOINT_SUBDIR)
        if heal.resume and state is None:
            raise FileNotFoundError(f"`heal.resume` (--resume): no healing checkpoint in "
                                    f"{str(out / CHECKPOINT_SUBDIR)!r}.")
        if not heal.resume and state is not None:
            raise FileExistsError(f"a healing checkpoint (step {state['step']}) is in "
                                  f"{str(out / CHECKPOINT_SUBDIR)!r}: set `heal.resume` (pass --resume) to continue it, or "
                                  "remove it to start afresh.")
    rows = None
    if settings.profile is not None:
        path = Path(settings.profile)
        if not path.is_file():
            raise FileNotFoundError(f"`profile` (--profile): no such file {str(path)!r}.")
        try:
            rows = [ProfileRow(**r) for r in json.loads(path.read_text())["sensitivity"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"`profile` {str(path)!r} is not a profile.json written by `tnkit profile` "
                             f"({exc}).") from None
        if not rows:
            raise ValueError(f"`profile` {str(path)!r} has no sensitivity rows (run `tnkit profile` with "
                             "--eval-text).")
    return out, rows


def run_heal(model: Any, settings: HealSettings, *, text_ids: Any = None, teacher: Any = None,
             checkpoint_dir: str | Path, seq_len: int, progress: bool = True,
             log: Callable[[str], None] | None = None) -> Any:
    """Heal ``model`` as ``settings`` say (:func:`tnkit.compress.heal`); the model ends on the CPU.

    Parameters
    ----------
    model : torch.nn.Module
    settings : HealSettings
    text_ids : array of int, optional
        Tokens of ``settings.text`` (needed by ``text`` and ``mix``).
    teacher : torch.nn.Module, optional
        The uncompressed model (needed when ``settings.needs_teacher``).
    checkpoint_dir : str or Path
    seq_len : int
        Window length; ``text`` healing uses at most an eighth of the text per window.
    progress : bool
    log : callable, optional
        Receives the one-line summary.

    Returns
    -------
    HealResult
    """
    from ..tuning.distill import distillation_stream
    from ..tuning.healing import heal

    if settings.data in ("text", "mix") and text_ids is None:
        raise ValueError(f"healing data {settings.data!r} needs `text_ids`.")
    if settings.needs_teacher and teacher is None:
        raise ValueError(f"healing with loss {settings.loss_name!r} on {settings.data!r} data needs `teacher`.")
    if settings.data == "text":
        source, window = text_ids, min(seq_len, max(2, len(text_ids) // 8))
    else:
        source = distillation_stream(teacher, seq_len=seq_len, text_ids=text_ids if settings.data == "mix" else None,
                                     text_fraction=settings.text_fraction, greedy_tokens=settings.greedy_tokens)
        window = None
    h = heal(model, source, max_tokens=settings.tokens, max_seconds=settings.seconds, lr=settings.lr, seq_len=window,
             batch_size=settings.batch_size, checkpoint_dir=Path(checkpoint_dir),
             checkpoint_every=settings.checkpoint_every, resume=settings.resume, loss=settings.loss_name,
             teacher=teacher if settings.loss_name == "kl" else None, device=settings.device,
             gradient_checkpointing=settings.gradient_checkpointing, progress=progress)
    model.to("cpu")
    if teacher is not None:
        teacher.to("cpu")
    if log is not None:
        log(f"healed {h.steps} steps ({h.steps - h.resumed_from_step} now), {h.tokens:,} tokens in {h.seconds:.1f} s "
            f"({h.tokens_per_s:,.1f} tokens/s on {h.device}), final loss {h.final_loss:.3f}")
    return h


def _calibration(settings: CompressSettings, calib_ids: Any) -> Any:
    """Calibration batches for the methods that need data (``None`` otherwise)."""
    from ..tuning.corpus import token_batches
    from .pipeline import NEEDS_DATA
    from .recipe import HELDOUT_FRACTION, calibration_batches

    if settings.method not in NEEDS_DATA and settings.prune is None:
        return None
    if calib_ids is None:
        raise ValueError(f"method {settings.method!r} needs calibration text: give `calib_text`, `heal.text` or "
                         "`eval_text` (--calib-text, --heal-text or --eval-text).")
    seq = min(settings.seq_len, len(calib_ids))
    n_batches = max(1, settings.calib_tokens // (4 * seq))
    calib = None
    if settings.method == "auto" and n_batches >= 2 and len(calib_ids) >= 4 * seq / HELDOUT_FRACTION:
        calib = calibration_batches(calib_ids, seq_len=seq, batch_size=4, n_batches=n_batches)
    return calib or token_batches(calib_ids, seq_len=seq, batch_size=4, n_batches=n_batches, seed=0)


def run_compress(settings: CompressSettings, *, log: Callable[[str], None] | None = None,
                 show_layers: bool = False) -> CompressRun:
    """Load, compress, heal, evaluate and save: the ``tnkit compress`` recipe (module docstring).

    Parameters
    ----------
    settings : CompressSettings
    log : callable, optional
        Receives each progress line and, with ``show_layers``, the per-layer table.
    show_layers : bool
        Also log the per-layer table after compressing.

    Returns
    -------
    CompressRun

    Raises
    ------
    ValueError, TypeError, FileNotFoundError, FileExistsError
        From :func:`check_compress_settings`, before the model is loaded.
    """
    import copy

    if not isinstance(settings, CompressSettings):
        raise TypeError(f"`settings` must be CompressSettings, got {type(settings).__name__}.")
    say = log if log is not None else (lambda text: None)
    s = settings
    start = time.perf_counter()
    say(f"tnkit compress: loading {s.model} ...")
    from ..layers.surgery import linear_weight
    from ..storage.models import load_model, stored_dtype
    from ..storage.serialize import round_weights, save_compressed
    from .evaluate import evaluate_model, model_bytes, write_reports
    from .pipeline import compress_model, count_params
    from .sensitivity import sensitive_layers, sensitivity_weights

    out, profile_rows = check_compress_settings(s)
    in_dtype = stored_dtype(s.model, gguf_file=s.gguf)
    save_dtype = in_dtype if s.save_dtype == "auto" else s.save_dtype
    model, tok = load_model(s.model, gguf_file=s.gguf, cache=s.cache)
    layers = select_layers(model, layers=s.layers, roles=s.roles, depth=s.depth, exclude=s.exclude)
    block_weights = sum(linear_weight(m).numel() for m in layers.values())
    bytes_before = model_bytes(model, dtype=in_dtype)
    say(f"loaded in {time.perf_counter() - start:.1f} s: {count_params(model):,} parameters, of which "
        f"{block_weights:,} in the {len(layers)} linear layers to compress"
        + ("" if s.ratio is None else f" (keeping {s.ratio:.0%}: {int(s.ratio * block_weights):,})")
        + f"; stored as {in_dtype}, the output will be {save_dtype}")
    untouched = _uncompressible_block_params(model, layers) if not s.selects_layers else 0
    if untouched:
        say(f"note: {untouched:,} parameters inside the blocks are not in linear layers (for example fused expert "
            f"tensors) and stay as they are; --ratio counts only the {len(layers)} linear layers")
    eval_ids = read_token_ids(tok, s.eval_text, "eval")
    heal_ids = read_token_ids(tok, None if s.heal is None else s.heal.text, "heal")
    calib_ids = (read_token_ids(tok, s.calib_text, "heal") if s.calib_text
                 else (heal_ids if heal_ids is not None else eval_ids))
    kw = dict(window=s.window, stride=s.stride, max_tokens=s.eval_tokens, progress=s.progress,
              speed_tokens=SPEED_TOKENS)
    reports = [evaluate_model(model, "original", ids=eval_ids, **kw)] if eval_ids is not None else []
    calib = _calibration(s, calib_ids)
    teacher = copy.deepcopy(model) if s.heal is not None and s.heal.needs_teacher else None
    weights, protect = None, []
    if profile_rows is not None:
        weights = sensitivity_weights(profile_rows, layers)
        if s.protect_above is not None:
            protect = sensitive_layers(profile_rows, layers, threshold=s.protect_above)
    extra = {} if s.families is None else {"families": tuple(s.families)}
    result = compress_model(model, method=s.method, ratio=s.ratio, max_bond=s.max_bond,
                            layers=layers if s.selects_layers else None, calibration=calib,
                            allocation=s.allocation, ridge=s.ridge, weights=weights, protect=protect,
                            sequential=s.sequential, feedback_ridge=s.feedback_ridge, prune=s.prune,
                            stats_precision=s.stats_precision, progress=s.progress, **extra)
    round_weights(model, save_dtype)  # what is measured below is what is saved
    if show_layers:
        say(result.table())
    if eval_ids is not None:
        reports.append(evaluate_model(model, f"{s.method}", ids=eval_ids, **kw))
    healed = None
    if s.heal is not None:
        healed = run_heal(model, s.heal, text_ids=heal_ids, teacher=teacher, checkpoint_dir=out / CHECKPOINT_SUBDIR,
                          seq_len=s.seq_len, progress=s.progress, log=say)
        round_weights(model, save_dtype)
        if eval_ids is not None:
            reports.append(evaluate_model(model, f"{s.method}+heal", ids=eval_ids, **kw))
    saved = save_compressed(model, out, tokenizer=tok, dtype=save_dtype)
    if reports:
        write_reports(reports, saved / "report.json")
    seconds = time.perf_counter() - start
    summary = _summary(result, block_weights, (bytes_before, model_bytes(model, dtype=save_dtype)), reports, seconds,
                       saved, (in_dtype, save_dtype))
    return CompressRun(result=result, reports=reports, heal=healed, out=saved, summary=summary, seconds=seconds)


def _uncompressible_block_params(model: Any, layers: Mapping[str, Any]) -> int:
    """Parameters of matrices (2-d or more) inside the numbered blocks that are not weights of ``layers``."""
    from ..layers.surgery import layer_depth

    covered = {id(p) for m in layers.values() for p in m.parameters()}
    return sum(p.numel() for name, p in model.named_parameters()
               if p.ndim >= 2 and layer_depth(name) is not None and id(p) not in covered)


def _summary(result: Any, block_weights: int, memory: tuple[int, int], reports: list, seconds: float, out: Any,
             dtypes: tuple[str, str] = ("float32", "float32")) -> str:
    """One screen: what was kept, how big, how good, how long."""
    from .evaluate import format_reports

    kept = sum(r.original_params if r.form == "dense" else r.params for r in result.layers)
    forms: dict[str, int] = {}
    for r in result.layers:
        forms[r.form] = forms.get(r.form, 0) + 1
    prune = result.extra.get("prune")
    lines = ["", f"== tnkit compress: {result.method} =="]
    if result.extra.get("auto_prunable") is False:
        lines.append("auto: no Llama-style blocks to width-prune: the factorisation search alone")
    elif result.extra.get("auto_predicted"):
        lines.append("auto: held-out loss of the search built in one shot after width pruning to " + ", ".join(
            f"{keep:.0%} {loss:.4f}" for keep, loss in result.extra["auto_predicted"].items()))
    if "auto_losses" in result.extra and result.extra.get("auto_prunable") is not False:
        lines.append("auto: held-out loss after width pruning to " + ", ".join(
            f"{keep:.0%} {loss:.4f}" for keep, loss in result.extra["auto_losses"].items())
            + f" of the block weights (then the search); chose {result.extra['auto_prune']:.0%}")
    if prune is not None:
        lines.append(f"width pruning: MLP {prune.before['intermediate_size']} -> {prune.intermediate_size} channels, "
                     f"key/value heads {prune.before['kv_groups']} -> {prune.kv_groups}, query heads per key/value "
                     f"head {prune.before['heads_per_group']} -> {prune.heads_per_group} (every block)")
        if result.method == "prune":
            kept, block_weights = prune.params_after, prune.params_before
    lines.append(f"block linear weights: {block_weights:,} -> {kept:,} ({kept / block_weights:.1%} kept); layers: "
                 + ", ".join(f"{n} {k}" for k, n in sorted(forms.items())))
    lines.append(f"whole model: {result.params_before:,} -> {result.params_after:,} parameters ({result.ratio:.1%}); "
                 f"{memory[0] / 2**20:,.1f} -> {memory[1] / 2**20:,.1f} MiB of parameters and buffers"
                 + ("" if dtypes == ("float32", "float32") else f" ({dtypes[0]} -> {dtypes[1]})"))
    if reports:
        lines.append(format_reports(reports))
    stages = result.extra.get("stage_seconds") or {}
    if stages:
        lines.append("time per stage (wall s, CPU s): " + ", ".join(
            f"{stage} {wall:.1f} ({cpu:.1f})" for stage, (wall, cpu) in stages.items()))
    lines.append(f"compression {result.seconds:.1f} s; total {seconds:.1f} s; saved to {out}")
    return "\n".join(lines)
