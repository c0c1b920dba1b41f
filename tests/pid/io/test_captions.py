"""Tests of pid.io.captions that need neither the Gemma weights nor a network connection."""

import json
import sys

import pytest
import torch

from pid.io.captions import (
    CAPTION_DIM,
    CHI_PROMPT_LINES,
    GEMMA_PATH_ENV,
    NEGATIVE_PROMPT,
    CaptionEncoder,
    GemmaNotFoundError,
    build_prompts,
    check_caption_embeds,
    chi_prefix,
    find_gemma,
    load_caption_embeds,
    save_caption_embeds,
    select_token_indices,
    token_budget,
    tokenize_captions,
)

BOS, PAD = 2, 0


class FakeTokenizer:
    """Whitespace tokenizer with Gemma's conventions: BOS prepended, right padding, right truncation."""

    def __init__(self):
        self.vocab = {"<pad>": PAD, "<eos>": 1, "<bos>": BOS}
        self.calls = []

    def _ids(self, text):
        return [BOS] + [self.vocab.setdefault(w, len(self.vocab)) for w in text.split()]

    def encode(self, text):
        return self._ids(text)

    def __call__(self, texts, max_length, padding, truncation, return_tensors):
        self.calls.append(dict(max_length=max_length, padding=padding, truncation=truncation, return_tensors=return_tensors))
        assert padding == "max_length" and truncation is True and return_tensors == "pt"
        rows, masks = [], []
        for text in texts:
            ids = self._ids(text)[:max_length]
            masks.append([1] * len(ids) + [0] * (max_length - len(ids)))
            rows.append(ids + [PAD] * (max_length - len(ids)))
        return {"input_ids": torch.tensor(rows), "attention_mask": torch.tensor(masks)}

    def words(self, ids):
        inverse = {v: k for k, v in self.vocab.items()}
        return [inverse[int(i)] for i in ids]


# --------------------------------------------------------------------------------------------
# Prompt building and token selection
# --------------------------------------------------------------------------------------------


def test_release_prompt_constants():
    assert len(CHI_PROMPT_LINES) == 8
    assert CHI_PROMPT_LINES[0].startswith('Given a user prompt, generate an "Enhanced prompt"')
    assert CHI_PROMPT_LINES[-1] == "User Prompt: "
    assert NEGATIVE_PROMPT.startswith("low quality, worst quality, over-saturated")
    assert NEGATIVE_PROMPT.endswith("jpeg artifacts, watermark")
    assert CAPTION_DIM == 2304


def test_build_prompts():
    prefix = chi_prefix()
    assert prefix == "\n".join(CHI_PROMPT_LINES) and prefix.count("\n") == 7 and prefix.endswith("User Prompt: ")
    assert build_prompts(["a cat", ""]) == [prefix + "a cat", prefix]
    assert build_prompts("a cat") == [prefix + "a cat"]
    assert build_prompts(["a cat"], chi_prompt=()) == ["a cat"]
    assert build_prompts(["a cat"], chi_prompt=None) == ["a cat"]
    assert build_prompts(["x"], chi_prompt=["L1", "L2: "]) == ["L1\nL2: x"]
    with pytest.raises(ValueError):
        build_prompts([])
    with pytest.raises(TypeError):
        build_prompts(["ok", 3])
    with pytest.raises(TypeError):
        chi_prefix("a single string")


def test_token_budget_and_selection():
    assert token_budget(0, 300) == 300
    assert token_budget(197, 300) == 495
    keep = select_token_indices(495, 300)
    assert len(keep) == 300 and keep[0] == 0 and keep[1] == 196 and keep[-1] == 494
    assert keep == [0] + [495 + k for k in range(-299, 0)]  # BOS + the last 299 positions
    assert select_token_indices(300, 300) == list(range(300))  # no prefix: everything is kept
    with pytest.raises(ValueError):
        select_token_indices(299, 300)
    with pytest.raises(ValueError):
        token_budget(-1)


def test_tokenize_keeps_bos_last_prefix_token_caption_and_padding():
    tok = FakeTokenizer()
    chi = ("Describe the image", "User Prompt: ")  # 1 BOS + 5 words -> n = 6
    out = tokenize_captions(tok, ["a red fox", ""], chi_prompt=chi, model_max_length=8)
    assert out.num_prefix_tokens == 6
    assert out.input_ids.shape == (2, 6 + 8 - 2) and out.attention_mask.shape == (2, 12)
    assert tok.calls[-1]["max_length"] == 12
    assert out.keep == [0, 5, 6, 7, 8, 9, 10, 11]
    kept = out.input_ids[:, out.keep]
    assert tok.words(kept[0]) == ["<bos>", "Prompt:", "a", "red", "fox", "<pad>", "<pad>", "<pad>"]
    assert tok.words(kept[1]) == ["<bos>", "Prompt:"] + ["<pad>"] * 6
    assert out.attention_mask[:, out.keep].tolist() == [[1] * 5 + [0] * 3, [1, 1] + [0] * 6]


def test_tokenize_long_caption_keeps_its_beginning():
    tok = FakeTokenizer()
    caption = " ".join(f"w{i}" for i in range(20))
    out = tokenize_captions(tok, [caption], chi_prompt=("User Prompt: ",), model_max_length=8)
    kept = tok.words(out.input_ids[0, out.keep])
    # truncation is on the right: BOS, last prefix token, then the first max_len - 2 caption words
    assert kept == ["<bos>", "Prompt:", "w0", "w1", "w2", "w3", "w4", "w5"]
    assert out.attention_mask[0, out.keep].tolist() == [1] * 8


def test_tokenize_with_release_prefix_and_without_prefix():
    tok = FakeTokenizer()
    out = tokenize_captions(tok, ["a cat"])
    n = 1 + len("\n".join(CHI_PROMPT_LINES).split())
    assert out.num_prefix_tokens == n and out.input_ids.shape[1] == n + 298 and len(out.keep) == 300
    assert tok.words(out.input_ids[0, out.keep][:4]) == ["<bos>", "Prompt:", "a", "cat"]
    bare = tokenize_captions(tok, ["a cat"], chi_prompt=())
    assert bare.num_prefix_tokens == 0 and bare.input_ids.shape == (1, 300) and bare.keep == list(range(300))


# --------------------------------------------------------------------------------------------
# Locating the weights
# --------------------------------------------------------------------------------------------


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME", GEMMA_PATH_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    return tmp_path


def _fake_model_folder(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "gemma2"}))
    (folder / "tokenizer.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def _fake_cache_snapshot(hub, repo_id, revision="abc123"):
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snap = _fake_model_folder(repo / "snapshots" / revision)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snap


def test_find_gemma_missing_explains_how_to_get_it(empty_caches):
    with pytest.raises(GemmaNotFoundError) as info:
        find_gemma()
    msg = str(info.value)
    assert "google/gemma-2-2b-it" in msg and "huggingface-cli download" in msg
    assert "model_path" in msg and GEMMA_PATH_ENV in msg
    assert str(empty_caches / "hf_home" / "hub") in msg
    assert isinstance(info.value, FileNotFoundError)


def test_find_gemma_bad_explicit_paths(empty_caches):
    with pytest.raises(GemmaNotFoundError, match="does not exist"):
        find_gemma(empty_caches / "nowhere")
    incomplete = empty_caches / "incomplete"
    incomplete.mkdir()
    (incomplete / "config.json").write_text("{}")
    with pytest.raises(GemmaNotFoundError, match="model weights") as info:
        find_gemma(incomplete)
    assert "tokenizer" in str(info.value)
    a_file = empty_caches / "file.txt"
    a_file.write_text("x")
    with pytest.raises(GemmaNotFoundError, match="not a folder"):
        find_gemma(a_file)


def test_find_gemma_resolves_folders_caches_and_env(empty_caches, monkeypatch):
    folder = _fake_model_folder(empty_caches / "gemma")
    assert find_gemma(folder) == folder
    assert find_gemma(str(folder)) == folder

    hub = empty_caches / "hf_home" / "hub"
    google = _fake_cache_snapshot(hub, "google/gemma-2-2b-it")
    assert find_gemma() == google
    assert find_gemma("google/gemma-2-2b-it") == google
    assert find_gemma(google.parent.parent) == google  # the models--google--gemma-2-2b-it folder
    # the release's own repo is preferred when both are cached
    ela = _fake_cache_snapshot(hub, "Efficient-Large-Model/gemma-2-2b-it", revision="def456")
    assert find_gemma() == ela
    with pytest.raises(GemmaNotFoundError):
        find_gemma("someone/other-model")

    monkeypatch.setenv(GEMMA_PATH_ENV, str(folder))
    assert find_gemma() == folder

    other_hub = empty_caches / "custom_hub"
    custom = _fake_cache_snapshot(other_hub, "google/gemma-2-2b-it", revision="zzz")
    monkeypatch.delenv(GEMMA_PATH_ENV)
    monkeypatch.setenv("HF_HUB_CACHE", str(other_hub))
    assert find_gemma() == custom


def test_encoder_without_transformers_says_how_to_install(empty_caches, monkeypatch):
    folder = _fake_model_folder(empty_caches / "gemma")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match="pip install transformers"):
        CaptionEncoder(model_path=folder, device="cpu")


def test_import_is_lazy():
    import subprocess

    code = "import sys, pid.io.captions; sys.exit(1 if 'transformers' in sys.modules else 0)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_encoder_end_to_end_with_tiny_random_gemma(tmp_path):
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, processors

    words = " ".join(CHI_PROMPT_LINES) + " " + NEGATIVE_PROMPT + " a red fox in the snow"
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    vocab = {w: i for i, w in enumerate(specials)}
    for w in words.replace(",", " , ").replace(":", " : ").split():
        vocab.setdefault(w, len(vocab))
    backend = tokenizers.Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", BOS)])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    folder = tmp_path / "tiny-gemma"
    fast.save_pretrained(folder)
    config = transformers.Gemma2Config(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=1, sliding_window=16,
    )
    torch.manual_seed(0)
    transformers.Gemma2ForCausalLM(config).save_pretrained(folder)

    enc = CaptionEncoder(model_path=folder, device="cpu")
    assert enc.embed_dim == 32
    embeds, mask = enc(["a red fox in the snow", ""])
    assert embeds.shape == (2, 300, 32) and embeds.dtype == torch.bfloat16
    assert mask.shape == (2, 300) and mask.dtype == torch.int64
    assert mask.sum(dim=1).tolist() == [2 + 6, 2]  # BOS + ":" of the prefix + caption words
    assert torch.isfinite(embeds.float()).all()
    # BOS is position 0 and sees only itself under causal attention: identical in every row
    assert torch.equal(embeds[0, 0], embeds[1, 0])
    # the kept rows are the decoder's last hidden states at [0] + the last 299 positions
    tokens = enc.tokenize(["a red fox in the snow"])
    hidden = enc.model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)[0]
    assert torch.equal(embeds[:1], hidden[:, [0] + list(range(-299, 0))])
    negative = enc.negative(3)
    assert negative.shape == (3, 300, 32)
    assert torch.equal(negative[2], enc([NEGATIVE_PROMPT])[0][0])


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _embeds(batch=2, length=300, dim=CAPTION_DIM, dtype=torch.bfloat16):
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, length, dim, generator=g).to(dtype)


def test_safetensors_round_trip(tmp_path):
    embeds = _embeds()
    mask = torch.zeros(2, 300, dtype=torch.int64)
    mask[:, :10] = 1
    path = save_caption_embeds(tmp_path / "cap.safetensors", embeds, mask)
    loaded, loaded_mask = load_caption_embeds(path)
    assert loaded.dtype == torch.bfloat16 and torch.equal(loaded, embeds)
    assert torch.equal(loaded_mask, mask)
    from safetensors.torch import load_file

    assert set(load_file(str(path))) == {"caption_embeds", "caption_mask"}
    as_float, _ = load_caption_embeds(path, dtype=torch.float32, device="cpu")
    assert as_float.dtype == torch.float32 and torch.equal(as_float, embeds.float())
    # without a mask
    save_caption_embeds(tmp_path / "nomask.safetensors", embeds[:1])
    only, no_mask = load_caption_embeds(tmp_path / "nomask.safetensors")
    assert no_mask is None and torch.equal(only, embeds[:1])


def test_pt_files(tmp_path):
    embeds = _embeds(batch=1, dtype=torch.float32)
    torch.save(embeds, tmp_path / "bare.pt")
    loaded, mask = load_caption_embeds(tmp_path / "bare.pt")
    assert mask is None and torch.equal(loaded, embeds)
    save_caption_embeds(tmp_path / "dict.pt", embeds, torch.ones(1, 300, dtype=torch.int64))
    loaded, mask = load_caption_embeds(tmp_path / "dict.pt")
    assert torch.equal(loaded, embeds) and mask.sum().item() == 300
    torch.save({"something_else": embeds}, tmp_path / "wrong_key.pt")
    with pytest.raises(ValueError, match="caption_embeds"):
        load_caption_embeds(tmp_path / "wrong_key.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError):
        load_caption_embeds(tmp_path / "list.pt")


def test_load_validation_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_caption_embeds(tmp_path / "missing.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="safetensors"):
        load_caption_embeds(tmp_path / "garbage.safetensors")
    (tmp_path / "cap.npy").write_bytes(b"")
    with pytest.raises(ValueError, match=".safetensors"):
        load_caption_embeds(tmp_path / "cap.npy")

    from safetensors.torch import save_file

    save_file({"other": torch.zeros(1, 2, CAPTION_DIM)}, str(tmp_path / "nokey.safetensors"))
    with pytest.raises(ValueError, match="caption_embeds"):
        load_caption_embeds(tmp_path / "nokey.safetensors")
    save_file({"caption_embeds": torch.zeros(300, CAPTION_DIM)}, str(tmp_path / "two_d.safetensors"))
    with pytest.raises(ValueError, match="3-D"):
        load_caption_embeds(tmp_path / "two_d.safetensors")
    save_file({"caption_embeds": torch.zeros(1, 300, 4096)}, str(tmp_path / "wide.safetensors"))
    with pytest.raises(ValueError, match="2304"):
        load_caption_embeds(tmp_path / "wide.safetensors")
    loaded, _ = load_caption_embeds(tmp_path / "wide.safetensors", embed_dim=None)  # width check off
    assert loaded.shape == (1, 300, 4096)
    bad = torch.zeros(1, 4, CAPTION_DIM)
    bad[0, 1, 2] = float("nan")
    save_file({"caption_embeds": bad}, str(tmp_path / "nan.safetensors"))
    with pytest.raises(ValueError, match="NaN"):
        load_caption_embeds(tmp_path / "nan.safetensors")
    save_file({"caption_embeds": torch.zeros(1, 4, CAPTION_DIM), "caption_mask": torch.ones(1, 5)},
              str(tmp_path / "badmask.safetensors"))
    with pytest.raises(ValueError, match="mask"):
        load_caption_embeds(tmp_path / "badmask.safetensors")


def test_check_and_save_errors(tmp_path):
    embeds = _embeds(batch=1, length=4)
    check_caption_embeds(embeds, torch.ones(1, 4))
    with pytest.raises(TypeError):
        check_caption_embeds(embeds.tolist())
    with pytest.raises(ValueError, match="floating"):
        check_caption_embeds(torch.zeros(1, 4, CAPTION_DIM, dtype=torch.int64))
    with pytest.raises(ValueError, match="0 and 1"):
        check_caption_embeds(embeds, torch.full((1, 4), 2))
    with pytest.raises(ValueError, match="infinite"):
        check_caption_embeds(torch.full((1, 4, CAPTION_DIM), float("inf")))
    with pytest.raises(ValueError, match=".safetensors"):
        save_caption_embeds(tmp_path / "cap.bin", embeds)
    with pytest.raises(ValueError, match="2304"):
        save_caption_embeds(tmp_path / "cap.safetensors", torch.zeros(1, 4, 8))
    assert not (tmp_path / "cap.safetensors").exists()
