"""Caption embeddings for PiD, computed from text with a local Gemma-2-2B-it (optional helper).

PiD conditions on ``y = [B, 300, 2304]``: hidden states of Gemma-2-2B-it for the caption. This
module reproduces how the release computes them, so embeddings made here match what the released
networks were trained and sampled with. It needs ``transformers`` and the Gemma weights on disk;
nothing is ever downloaded. ``transformers`` is imported only when an encoder is built, so
``import pid.io.captions`` stays cheap, and the file helpers work without it.

The release pipeline (read from ``pid/_src/models/pixeldit_model.py``: ``_load_text_encoder``,
``PixelDiTModel.__init__``, ``_encode_text_raw``; the v1.5 configs in ``pid/_src/configs/pid/
experiment_2kto4k_v1pt5/shared_config.py`` and ``pid_training/experiment_pid_v1pt5_*``):

1. Model: ``text_encoder_name = "gemma-2-2b-it"``, which the release maps to the Hugging Face
   repo ``Efficient-Large-Model/gemma-2-2b-it`` (a re-upload of ``google/gemma-2-2b-it``). The
   tokenizer is ``AutoTokenizer`` with ``padding_side = "right"``; the encoder is
   ``AutoModelForCausalLM(..., bfloat16).get_decoder()`` (the bare Gemma2 decoder), in eval mode,
   with the transformers default attention implementation (the release pins transformers 4.57.1).
2. Prompt: every caption, including the negative prompt, gets the "complex human instruction"
   prefix: the 8 lines of :data:`CHI_PROMPT_LINES` joined with ``"\\n"`` (the last line ends in
   ``"User Prompt: "``), and the caption appended directly.
3. Token budget: ``n = len(tokenizer.encode(prefix))`` (BOS included); the prompts are tokenized
   with ``max_length = n + 300 - 2``, ``padding="max_length"``, ``truncation=True`` (right-side),
   so every row is exactly that long: BOS, prefix, caption, then ``<pad>`` tokens.
4. Encoder: ``decoder(input_ids, attention_mask)[0]``, the last hidden state (after the final
   RMSNorm), in bfloat16, for every position (padding positions included).
5. Selection: position 0 (BOS) plus the last 299 positions, i.e. ``[0] + range(-299, 0)``. The
   prefix is almost entirely dropped; what remains is BOS, the prefix's last token(s), the
   caption and the padding. The mask is the attention mask at the same positions. The networks
   never receive the mask: PiD always gets all 300 tokens.
6. Result: ``embeds [B, 300, 2304]`` bfloat16, ``mask [B, 300]`` int64. The sampler upcasts the
   embeddings to float32 for the network.
7. The unconditional input for CFG is the same pipeline applied to :data:`NEGATIVE_PROMPT`.

The prefix and negative prompt are reproduced verbatim below because the released weights were
trained with exactly these strings; any change in them changes the embeddings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from pid.configs import CAPTION_TOKENS
from pid.io import hub

__all__ = [
    "CAPTION_DIM",
    "MODEL_MAX_LENGTH",
    "GEMMA_REPO_IDS",
    "GEMMA_PATH_ENV",
    "CHI_PROMPT_LINES",
    "NEGATIVE_PROMPT",
    "GemmaNotFoundError",
    "CaptionTokens",
    "chi_prefix",
    "build_prompts",
    "token_budget",
    "select_token_indices",
    "tokenize_captions",
    "find_gemma",
    "CaptionEncoder",
    "check_caption_embeds",
    "save_caption_embeds",
    "load_caption_embeds",
]

CAPTION_DIM = 2304
MODEL_MAX_LENGTH = CAPTION_TOKENS
# Repos searched in the Hugging Face cache, the release's own choice first.
GEMMA_REPO_IDS = ("Efficient-Large-Model/gemma-2-2b-it", "google/gemma-2-2b-it")
GEMMA_PATH_ENV = "PID_GEMMA_PATH"
EMBEDS_KEY = "caption_embeds"
MASK_KEY = "caption_mask"

# Conditioning constants (verbatim; see the module docstring).
CHI_PROMPT_LINES: Tuple[str, ...] = (
    'Given a user prompt, generate an "Enhanced prompt" that provides detailed visual descriptions suitable for image generation. Evaluate the level of detail in the user prompt:',
    "- If the prompt is simple, focus on adding specifics about colors, shapes, sizes, textures, and spatial relationships to create vivid and concrete scenes.",
    "- If the prompt is already detailed, refine and enhance the existing details slightly without overcomplicating.",
    "Here are examples of how to transform or refine prompts:",
    "- User Prompt: A cat sleeping -> Enhanced: A small, fluffy white cat curled up in a round shape, sleeping peacefully on a warm sunny windowsill, surrounded by pots of blooming red flowers.",
    "- User Prompt: A busy city street -> Enhanced: A bustling city street scene at dusk, featuring glowing street lamps, a diverse crowd of people in colorful clothing, and a double-decker bus passing by towering glass skyscrapers.",
    "Please generate only the enhanced description for the prompt below and avoid including any additional commentary or evaluations:",
    "User Prompt: ",
)
NEGATIVE_PROMPT = (
    "low quality, worst quality, over-saturated, three legs, six fingers, cartoon, anime, cgi, low res, "
    "blurry, deformed, distortion, duplicated limbs, plastic skin, jpeg artifacts, watermark"
)

PathLike = Union[str, "os.PathLike[str]"]


class GemmaNotFoundError(FileNotFoundError):
    """Gemma-2-2B-it is not available on this machine."""


# --------------------------------------------------------------------------------------------
# Prompt building and token selection (pure; testable without a tokenizer)
# --------------------------------------------------------------------------------------------


def chi_prefix(chi_prompt: Optional[Sequence[str]] = CHI_PROMPT_LINES) -> str:
    """The instruction prefix: the lines joined with newlines ("" when there are none)."""
    if not chi_prompt:
        return ""
    if isinstance(chi_prompt, str):
        raise TypeError("chi_prompt must be a sequence of lines, not a single string")
    return "\n".join(chi_prompt)


def _as_caption_list(captions: Union[str, Iterable[str]]) -> List[str]:
    if isinstance(captions, str):
        captions = [captions]
    captions = list(captions)
    if not captions:
        raise ValueError("captions must not be empty")
    for i, c in enumerate(captions):
        if not isinstance(c, str):
            raise TypeError(f"caption {i} must be a str, got {type(c).__name__}")
    return captions


def build_prompts(
    captions: Union[str, Iterable[str]], chi_prompt: Optional[Sequence[str]] = CHI_PROMPT_LINES
) -> List[str]:
    """The strings the tokenizer sees: ``prefix + caption`` (no separator), or the bare captions."""
    prefix = chi_prefix(chi_prompt)
    return [prefix + c for c in _as_caption_list(captions)]


def token_budget(num_prefix_tokens: int, model_max_length: int = MODEL_MAX_LENGTH) -> int:
    """Padded token length of every row: ``n + max_len - 2`` with a prefix of n tokens, else max_len."""
    if model_max_length < 2:
        raise ValueError(f"model_max_length must be >= 2, got {model_max_length}")
    if num_prefix_tokens < 0:
        raise ValueError(f"num_prefix_tokens must be >= 0, got {num_prefix_tokens}")
    if num_prefix_tokens == 0:
        return model_max_length
    return num_prefix_tokens + model_max_length - 2


def select_token_indices(seq_len: int, model_max_length: int = MODEL_MAX_LENGTH) -> List[int]:
    """Positions kept from a row of ``seq_len`` tokens: 0 (BOS), then the last ``max_len - 1``."""
    if model_max_length < 1:
        raise ValueError(f"model_max_length must be >= 1, got {model_max_length}")
    if seq_len < model_max_length:
        raise ValueError(f"a row of {seq_len} tokens cannot provide {model_max_length} positions")
    return [0] + list(range(seq_len - model_max_length + 1, seq_len))


@dataclass
class CaptionTokens:
    """Tokenizer output for a batch, and the positions that become the PiD caption."""

    input_ids: Tensor  # [B, T] int64
    attention_mask: Tensor  # [B, T] int64
    keep: List[int]  # model_max_length positions into T
    num_prefix_tokens: int


def tokenize_captions(
    tokenizer: Any,
    captions: Union[str, Iterable[str]],
    *,
    chi_prompt: Optional[Sequence[str]] = CHI_PROMPT_LINES,
    model_max_length: int = MODEL_MAX_LENGTH,
) -> CaptionTokens:
    """Tokenize captions the way the release does.

    ``tokenizer`` needs ``encode(text) -> list[int]`` (adding BOS, as Gemma's does) and
    ``tokenizer(texts, max_length=..., padding="max_length", truncation=True,
    return_tensors="pt")`` returning ``input_ids`` and ``attention_mask``; it must already pad
    on the right.
    """
    prompts = build_prompts(captions, chi_prompt)
    prefix = chi_prefix(chi_prompt)
    num_prefix = len(tokenizer.encode(prefix)) if prefix else 0
    budget = token_budget(num_prefix, model_max_length)
    enc = tokenizer(prompts, max_length=budget, padding="max_length", truncation=True, return_tensors="pt")
    input_ids = torch.as_tensor(enc["input_ids"])
    attention_mask = torch.as_tensor(enc["attention_mask"])
    if input_ids.ndim != 2 or input_ids.shape != attention_mask.shape or input_ids.shape[1] != budget:
        raise RuntimeError(
            f"tokenizer returned input_ids {tuple(input_ids.shape)} / attention_mask "
            f"{tuple(attention_mask.shape)}, expected [{len(prompts)}, {budget}]"
        )
    keep = select_token_indices(budget, model_max_length)
    return CaptionTokens(input_ids=input_ids, attention_mask=attention_mask, keep=keep, num_prefix_tokens=num_prefix)


# --------------------------------------------------------------------------------------------
# Locating the weights
# --------------------------------------------------------------------------------------------


def _missing_parts(folder: Path) -> List[str]:
    """What a usable model folder lacks (empty list when complete)."""
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer.model")):
        missing.append("tokenizer.json or tokenizer.model")
    weights = list(folder.glob("*.safetensors")) + list(folder.glob("*.bin"))
    if not weights:
        missing.append("model weights (*.safetensors)")
    return missing


def _resolve_folder(folder: Path) -> Tuple[Optional[Path], List[str]]:
    """A complete model folder for ``folder`` (itself, or a snapshot inside a cache repo folder)."""
    notes: List[str] = []
    candidates = [folder] + hub.snapshots(folder)
    for cand in candidates:
        missing = _missing_parts(cand)
        if not missing:
            return cand, notes
        notes.append(f"{cand} (missing {', '.join(missing)})")
    return None, notes


def _how_to_get() -> str:
    return (
        "PiD never downloads it. To get it: accept the Gemma license on "
        "https://huggingface.co/google/gemma-2-2b-it, log in (`huggingface-cli login`), then run "
        "`huggingface-cli download google/gemma-2-2b-it` (fills the Hugging Face cache), or download "
        f"it to a folder and pass model_path=<folder> or set {GEMMA_PATH_ENV}=<folder>."
    )


def find_gemma(model_path: Optional[PathLike] = None) -> Path:
    """Locate a local Gemma-2-2B-it folder (config, tokenizer and weights), without downloading.

    ``model_path`` may be a model folder, a hub cache repo folder (``models--org--name``), or a
    repo id such as ``"google/gemma-2-2b-it"`` looked up in the Hugging Face cache. Without it,
    ``$PID_GEMMA_PATH`` is used when set, else the caches (``HF_HUB_CACHE``,
    ``HUGGINGFACE_HUB_CACHE``, ``HF_HOME/hub``, ``XDG_CACHE_HOME/huggingface/hub``,
    ``~/.cache/huggingface/hub``) are searched for :data:`GEMMA_REPO_IDS`.

    Raises:
        GemmaNotFoundError: nothing usable was found; the message lists where it looked and how
            to get the weights.
    """
    if model_path is None and os.environ.get(GEMMA_PATH_ENV):
        model_path = os.environ[GEMMA_PATH_ENV]

    repo_ids: Sequence[str] = GEMMA_REPO_IDS
    if model_path is not None:
        path = Path(os.fspath(model_path)).expanduser()
        if path.exists():
            if not path.is_dir():
                raise GemmaNotFoundError(f"Gemma model_path {path} is not a folder. {_how_to_get()}")
            found, notes = _resolve_folder(path)
            if found is not None:
                return found
            raise GemmaNotFoundError(
                f"Gemma model_path {path} is not a complete model folder: {'; '.join(notes)}. {_how_to_get()}"
            )
        text = os.fspath(model_path)
        looks_like_repo = text.count("/") == 1 and not text.startswith((".", "/", "~")) and "\\" not in text
        if not looks_like_repo:
            raise GemmaNotFoundError(f"Gemma model_path {path} does not exist. {_how_to_get()}")
        repo_ids = (text,)

    searched: List[str] = []
    for cache in hub.cache_dirs():
        for repo_id in repo_ids:
            repo_dir = hub.repo_folder(cache, repo_id)
            if not repo_dir.is_dir():
                searched.append(f"{repo_dir} (absent)")
                continue
            found, notes = _resolve_folder(repo_dir)
            if found is not None:
                return found
            searched.extend(notes or [f"{repo_dir} (no snapshot)"])
    raise GemmaNotFoundError(
        "Gemma-2-2B-it (PiD's caption encoder) was not found locally. Looked in: "
        + "; ".join(searched)
        + ". "
        + _how_to_get()
    )


def _require_transformers():
    try:
        import transformers  # noqa: PLC0415 (lazy on purpose)
    except ImportError as exc:
        raise ImportError(
            "pid.io.captions.CaptionEncoder needs Hugging Face transformers: `pip install transformers` "
            "(the release used transformers==4.57.1)."
        ) from exc
    return transformers


def _dtype_kwarg(transformers) -> str:
    """``from_pretrained`` takes ``dtype`` from transformers 4.56 on, ``torch_dtype`` before."""
    try:
        major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    except ValueError:
        return "torch_dtype"
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


# --------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------


class CaptionEncoder:
    """Text -> PiD caption embeddings with a local Gemma-2-2B-it, as the release computes them.

    Example::

        enc = CaptionEncoder()                       # finds the weights, loads on GPU if any
        y, mask = enc(["a red fox in the snow"])     # [1, 300, 2304] bf16, [1, 300] int64
        y_neg = enc.negative(batch_size=1)           # unconditional input for CFG

    Args:
        model_path: model folder, hub cache folder or repo id; see :func:`find_gemma`.
        device: where to run (default: CUDA if available, else CPU).
        dtype: encoder weight dtype; the release uses bfloat16.
        chi_prompt: instruction prefix lines (the release's by default; ``()`` for none).
        model_max_length: caption tokens produced (300 in every release).
        attn_implementation: passed to transformers when given; ``None`` keeps its default, as
            the release does.
    """

    def __init__(
        self,
        model_path: Optional[PathLike] = None,
        device: Optional[Union[str, torch.device]] = None,
        dtype: Union[str, torch.dtype] = torch.bfloat16,
        *,
        chi_prompt: Optional[Sequence[str]] = CHI_PROMPT_LINES,
        model_max_length: int = MODEL_MAX_LENGTH,
        attn_implementation: Optional[str] = None,
    ):
        from pid.sampling.checks import as_device, as_dtype

        dtype = as_dtype(dtype)
        transformers = _require_transformers()
        path = find_gemma(model_path)
        self.device = as_device(device)
        self.dtype = dtype
        self.model_path = path
        self.chi_prompt = tuple(chi_prompt) if chi_prompt else ()
        self.model_max_length = int(model_max_length)

        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.tokenizer.padding_side = "right"
        kwargs = {"local_files_only": True, _dtype_kwarg(transformers): dtype}
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        lm = transformers.AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
        self.model = lm.get_decoder().to(self.device)
        del lm
        self.model.eval()
        self.model.requires_grad_(False)
        self.embed_dim = int(self.model.config.hidden_size)
        self._negative: Optional[Tensor] = None

    def tokenize(self, captions: Union[str, Iterable[str]]) -> CaptionTokens:
        return tokenize_captions(
            self.tokenizer, captions, chi_prompt=self.chi_prompt, model_max_length=self.model_max_length
        )

    @torch.no_grad()
    def __call__(self, texts: Union[str, Iterable[str]]) -> Tuple[Tensor, Tensor]:
        """Embed captions: ``(embeds [B, 300, D] in self.dtype, mask [B, 300] int64)``."""
        tokens = self.tokenize(texts)
        input_ids = tokens.input_ids.to(self.device)
        attention_mask = tokens.attention_mask.to(self.device)
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask)[0]
        keep = torch.tensor(tokens.keep, device=self.device)
        return hidden.index_select(1, keep), attention_mask.index_select(1, keep)

    def negative(self, batch_size: int = 1) -> Tensor:
        """Embedding of :data:`NEGATIVE_PROMPT` (the release's CFG input), ``[batch_size, 300, D]``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self._negative is None:
            self._negative = self([NEGATIVE_PROMPT])[0]
        return self._negative.expand(batch_size, -1, -1)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def check_caption_embeds(
    embeds: Any, mask: Any = None, *, embed_dim: Optional[int] = CAPTION_DIM, name: str = "caption_embeds"
) -> None:
    """Raise ``ValueError``/``TypeError`` unless ``embeds`` is a finite float ``[B, L, embed_dim]``
    tensor and ``mask`` (if given) a ``[B, L]`` tensor of 0/1 values."""
    if not isinstance(embeds, Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(embeds).__name__}")
    if embeds.ndim != 3:
        raise ValueError(f"{name} must be 3-D [B, L, D], got shape {tuple(embeds.shape)}")
    if embeds.shape[0] < 1 or embeds.shape[1] < 1:
        raise ValueError(f"{name} must have at least one sample and one token, got shape {tuple(embeds.shape)}")
    if embed_dim is not None and embeds.shape[-1] != embed_dim:
        raise ValueError(f"{name} last dim must be {embed_dim}, got {embeds.shape[-1]} (shape {tuple(embeds.shape)})")
    if not embeds.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {embeds.dtype}")
    if not torch.isfinite(embeds).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if mask is None:
        return
    if not isinstance(mask, Tensor):
        raise TypeError(f"caption mask must be a tensor, got {type(mask).__name__}")
    if tuple(mask.shape) != tuple(embeds.shape[:2]):
        raise ValueError(f"caption mask must be [B, L] = {tuple(embeds.shape[:2])}, got {tuple(mask.shape)}")
    if mask.is_complex() or not ((mask == 0) | (mask == 1)).all():
        raise ValueError("caption mask must hold only 0 and 1")


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def save_caption_embeds(
    path: PathLike, embeds: Tensor, mask: Optional[Tensor] = None, *, embed_dim: Optional[int] = CAPTION_DIM
) -> Path:
    """Save embeddings (and optionally the mask) under the keys ``caption_embeds`` / ``caption_mask``.

    ``.safetensors`` is the format of choice; ``.pt`` / ``.pth`` write the same dict with
    ``torch.save``. Tensors are stored as given (dtype kept), on the CPU.
    """
    path = Path(os.fspath(path)).expanduser()
    check_caption_embeds(embeds, mask, embed_dim=embed_dim)
    tensors = {EMBEDS_KEY: embeds.detach().to("cpu").contiguous()}
    if mask is not None:
        tensors[MASK_KEY] = mask.detach().to("cpu").contiguous()
    suffix = _suffix(path)
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(path), metadata={"format": "pt", "content": "pid-caption-embeds"})
    elif suffix in (".pt", ".pth"):
        torch.save(tensors, str(path))
    else:
        raise ValueError(f"caption embeddings file must end in .safetensors, .pt or .pth, got {path.name!r}")
    return path


def load_caption_embeds(
    path: PathLike,
    *,
    embed_dim: Optional[int] = CAPTION_DIM,
    device: Optional[Union[str, torch.device]] = None,
    dtype: Optional[Union[str, torch.dtype]] = None,
    what: str = "caption embeddings file",
) -> Tuple[Tensor, Optional[Tensor]]:
    """Load ``(embeds [B, L, D], mask [B, L] or None)`` and validate them.

    Accepts a ``.safetensors`` file with ``caption_embeds`` (and optionally ``caption_mask``), or a
    ``.pt`` / ``.pth`` file (read with ``torch.load(weights_only=True)``) holding either a bare
    embeddings tensor or a dict with those keys. ``dtype`` (a torch.dtype or a name such as
    "bf16") converts the embeddings (not the mask); ``device`` moves both. ``what`` names the file
    in errors (e.g. "negative embeddings file").
    """
    from pid.io.files import read_tensor_file
    from pid.sampling.checks import as_dtype

    dtype = as_dtype(dtype)
    path = Path(os.fspath(path)).expanduser()
    if path.suffix.lower() not in (".safetensors", ".pt", ".pth"):
        raise ValueError(f"{what} must end in .safetensors, .pt or .pth, got {path.name!r}")
    data, _ = read_tensor_file(path, what)

    if isinstance(data, Tensor):
        embeds, mask = data, None
    elif isinstance(data, dict):
        if EMBEDS_KEY not in data:
            raise ValueError(f"{what} {path} has no {EMBEDS_KEY!r} entry (found keys: {sorted(map(str, data))})")
        embeds, mask = data[EMBEDS_KEY], data.get(MASK_KEY)
    else:
        raise ValueError(f"{what} {path} must hold a tensor or a dict with {EMBEDS_KEY!r}, got {type(data).__name__}")

    check_caption_embeds(embeds, mask, embed_dim=embed_dim, name=f"{EMBEDS_KEY} in {path.name}")
    if dtype is not None:
        embeds = embeds.to(dtype)
    if device is not None:
        embeds = embeds.to(device)
        mask = mask.to(device) if mask is not None else None
    return embeds, mask
