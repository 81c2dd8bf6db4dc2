"""LLMLingua-2 re-implementation: exact parity with llmlingua 0.2.2, windows, batching, force words."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from testkit.lingua import require_llmlingua
from tests.models.support import RATES, TEXTS

require_llmlingua("torch", "transformers")

from headroom.models.lingua2 import Lingua2, force_word_set, normalize_word  # noqa: E402


# ------------------------------------------------------------------ parity with llmlingua
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("name", sorted(TEXTS))
def test_same_text_as_llmlingua(name, rate, lingua_torch, prompt_compressor):
    require_llmlingua("llmlingua")
    text = TEXTS[name]
    expected = prompt_compressor.compress_prompt(text, rate=rate)
    got = lingua_torch.compress(text, rate)
    assert got.text == expected["compressed_prompt"]
    assert got.tokens_before == expected["origin_tokens"]
    assert got.tokens_after == expected["compressed_tokens"]
    assert got.text != text and got.text  # the rate did something, and left something


def test_parity_texts_cover_the_window_paths(lingua_torch):
    """The parity cases would be weak if they never crossed a window boundary."""
    long_plan = lingua_torch.plan(TEXTS["long"])
    assert len(long_plan.windows) >= 3
    tokenizer = lingua_torch.tokenizer
    # long: windows end at a sentence end ([SEP] is cut off when the "." is token 511)
    for w in long_plan.windows[:-1]:
        content = w.tokens[1:-1] if w.tokens[-1] == tokenizer.sep_token else w.tokens[1:]
        assert content[-1] == "."
    cut_plan = lingua_torch.plan(TEXTS["no_periods"])
    assert len(cut_plan.windows) >= 2
    # no sentence end: cut at the hard limit, [CLS] + 511 tokens and no [SEP] (as llmlingua)
    assert len(cut_plan.windows[0]) == 512 and cut_plan.windows[0].tokens[-1] != tokenizer.sep_token
    assert any(ch.isdigit() for ch in TEXTS["paragraphs"]) and "\n" in TEXTS["paragraphs"]


@pytest.mark.parametrize("name", ["short", "long"])
def test_rate_one_is_llmlingua_passthrough(name, lingua_torch, prompt_compressor):
    require_llmlingua("llmlingua")
    expected = prompt_compressor.compress_prompt(TEXTS[name], rate=1.0)["compressed_prompt"]
    assert lingua_torch.compress(TEXTS[name], 1.0).text == expected
    plan = lingua_torch.plan(TEXTS[name])
    assert lingua_torch.assemble(plan, [], 1.0).text == expected  # no model call needed


# ------------------------------------------------------------------ windows
@pytest.mark.parametrize("limit", [512, 64, 16])
def test_plan_never_exceeds_the_window_limit(limit, lingua_torch):
    lingua = Lingua2(lingua_torch.tokenizer, lingua_torch.backend, max_window_tokens=limit)
    tokenizer = lingua.tokenizer
    for text in [*TEXTS.values(), "word " * 3000, "x" * 5000, ".\n" * 700, ""]:
        plan = lingua.plan(text)
        assert all(0 < len(w) <= limit for w in plan.windows)
        assert all(w.input_ids.dtype == np.int64 and w.input_ids.ndim == 1 for w in plan.windows)
        assert all(w.input_ids[0] == tokenizer.cls_token_id for w in plan.windows)
        assert plan.tokens == len(tokenizer.tokenize(text))
        assert plan.window_tokens == sum(len(w) for w in plan.windows)
        if text.strip():
            assert plan.tokens <= plan.window_tokens


def test_empty_text(lingua_torch):
    result = lingua_torch.compress("", 0.5)
    assert (result.text, result.tokens_before, result.tokens_after) == ("", 0, 0)


# ------------------------------------------------------------------ batching
class RecordingBackend:
    def __init__(self, inner):
        self.inner, self.name, self.device, self.shapes = inner, inner.name, inner.device, []

    def forward(self, input_ids, attention_mask):
        self.shapes.append(input_ids.shape)
        assert input_ids.dtype == np.int64 and attention_mask.dtype == np.int64
        return self.inner.forward(input_ids, attention_mask)


def test_window_probabilities_do_not_depend_on_batch_padding(lingua_torch):
    long_windows = lingua_torch.plan(TEXTS["long"]).windows
    short = lingua_torch.plan(TEXTS["short"]).windows[0]
    alone = lingua_torch.keep_probabilities([short])[0]
    batched = lingua_torch.keep_probabilities([long_windows[0], short, long_windows[1]])
    assert len(short) < len(long_windows[0])
    assert alone.shape == (len(short),) and batched[1].shape == alone.shape
    np.testing.assert_allclose(batched[1], alone, rtol=0, atol=1e-5)
    assert batched[0].shape == (len(long_windows[0]),)
    assert np.all((alone > 0) & (alone < 1))


def test_forward_pads_only_to_the_longest_window(lingua_torch):
    recorder = RecordingBackend(lingua_torch.backend)
    lingua = Lingua2(lingua_torch.tokenizer, recorder)
    short = lingua.plan(TEXTS["short"]).windows[0]
    mid = lingua.plan(TEXTS["paragraphs"]).windows[0]
    lingua.keep_probabilities([short, mid, short])
    assert recorder.shapes == [(3, max(len(short), len(mid)))]
    assert max(len(short), len(mid)) < 512
    assert lingua.keep_probabilities([]) == [] and len(recorder.shapes) == 1


def test_windows_of_several_texts_share_one_batch(lingua_torch):
    """What the model server does: plan each request, one forward for all, assemble each."""
    plans = [lingua_torch.plan(TEXTS[name]) for name in ("short", "long", "paragraphs")]
    windows = [w for plan in plans for w in plan.windows]
    probs = lingua_torch.keep_probabilities(windows)
    start = 0
    for plan, name in zip(plans, ("short", "long", "paragraphs")):
        mine = probs[start : start + len(plan.windows)]
        start += len(plan.windows)
        assert lingua_torch.assemble(plan, mine, 0.5) == lingua_torch.compress(TEXTS[name], 0.5)


def test_assemble_checks_probability_count(lingua_torch):
    plan = lingua_torch.plan(TEXTS["long"])
    with pytest.raises(ValueError):
        lingua_torch.assemble(plan, [], 0.5)


# ------------------------------------------------------------------ force words
def _decisions(lingua, text, rate, force=frozenset()):
    plan = lingua.plan(text)
    probs = lingua.keep_probabilities(plan.windows)
    out = []
    for window, p in zip(plan.windows, probs):
        words, keep = lingua.select(window, p, rate, force)
        out += list(zip(words, keep))
    return out


def test_force_words_are_kept_at_a_very_low_rate(lingua_torch):
    text, rate = TEXTS["paragraphs"], 0.05
    decisions = _decisions(lingua_torch, text, rate)
    kept = {w for w, k in decisions if k}
    never_kept = sorted({w for w, k in decisions if not k and w.isalpha() and len(w) > 3} - kept)
    targets = never_kept[:4]
    assert len(targets) == 4
    plain = lingua_torch.compress(text, rate).text.split()
    assert not any(t in plain for t in targets)
    # as a user would type them: other case, surrounding punctuation
    forced = [f"{targets[0].upper()},", f'"{targets[1].lower()}"', f"({targets[2]})?", targets[3]]
    result = lingua_torch.compress(text, rate, force_words=forced)
    for t in targets:
        assert t in result.text.split(), t
    # every occurrence is kept, and only the forced words change
    with_force = _decisions(lingua_torch, text, rate, force_word_set(forced))
    assert [w for w, _ in with_force] == [w for w, _ in decisions]
    for (word, keep), (_, before) in zip(with_force, decisions):
        if word in targets:
            assert keep
        elif keep:
            assert before  # forced words count toward the rate: nothing else is added
    assert len(result.text) < len(text) / 3


def test_force_words_split_like_the_tokenizer(lingua_torch):
    text = TEXTS["short"]  # contains "xylophone-playing"
    assert {"xylophone-playing", "xylophone", "playing"} <= force_word_set(["Xylophone-Playing!"])
    result = lingua_torch.compress(text, 0.05, force_words=["Xylophone-Playing!"])
    assert "xylophone" in result.text and "playing" in result.text
    assert normalize_word("¿«Hello»!") == "hello"
    assert force_word_set(["...", ""]) == frozenset()


# ------------------------------------------------------------------ import hygiene
def test_algorithm_and_loader_import_without_torch_or_onnxruntime():
    code = (
        "import sys, headroom.models, headroom.models.lingua2, headroom.models.loader, "
        "headroom.models.export, headroom.models.torch_backend, headroom.models.onnx_backend\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'transformers', 'onnx') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
