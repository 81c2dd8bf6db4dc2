"""LLMLingua-2 prompt compression with the forward pass split out, so that windows of
different requests can share one batch.

This re-implements what ``llmlingua`` 0.2.2 does for
``PromptCompressor(model_name=..., use_llmlingua2=True).compress_prompt(text, rate=r)``
(one context, every other argument at its default), in three steps:

1. :meth:`Lingua2.plan` — tokenise the text with the model's tokenizer and cut it into
   windows of at most ``max_window_tokens - 2`` tokens, each ending at the last ``"."``
   (or ``"\\n"``, which WordPiece never emits) that fits. Like llmlingua, each piece is
   turned back into a string and tokenised again, and the window is
   ``[CLS] + tokens + [SEP]`` cut to ``max_window_tokens``.
2. :meth:`Lingua2.keep_probabilities` — one forward pass over any windows (from any plans),
   padded to the longest of them; softmax; probability of label 1 ("keep") per token.
3. :meth:`Lingua2.assemble` — per window: sub-word tokens are merged into words (special
   tokens skipped), a word's probability is the mean of its tokens'; each word is weighted
   by its number of ``cl100k_base`` tokens and the words above the
   ``int(100 * (1 - rate) + 1)``-th percentile are kept; the kept words of a window are
   joined by the tokenizer's ``convert_tokens_to_string``, and the windows' strings are
   concatenated with nothing between them (llmlingua's choice, kept for parity).

The defaults of ``compress_prompt`` force nothing: ``force_tokens=[]``,
``force_reserve_digit=False``, ``drop_consecutive=False``; newlines are not tokens at all
for these tokenizers, so the output has none. What this module adds is ``force_words``:
words always kept (case-insensitive, surrounding punctuation stripped). A forced word gets
probability 1.0 *before* the percentile is taken, like llmlingua's ``force_tokens``, so it
counts toward the rate instead of adding to it.

Known differences from llmlingua, none of which occur with ordinary text:

* a window with no word at all (only special/unknown tokens) gives ``""`` where llmlingua
  raises from ``np.percentile([])``;
* token counting uses ``encode_ordinary``, so text containing ``<|endoftext|>`` is counted
  as plain text where llmlingua raises;
* llmlingua adds ``[NEW0]`` … ``[NEW99]`` to its tokenizer; those strings in the input are
  ordinary text here.

This module imports only numpy (and tiktoken when first used); the model runs behind a
:class:`Backend` (see ``torch_backend`` and ``onnx_backend``).
"""

from __future__ import annotations

import re
import string
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

MAX_WINDOW_TOKENS = 512
CHUNK_END_TOKENS = frozenset({".", "\n"})
TOKEN_WEIGHT_ENCODING = "cl100k_base"  # llmlingua's tiktoken.encoding_for_model("gpt-3.5-turbo")
# llmlingua builds every window with BERT's markers, whatever the model: TokenClfDataset is
# created without model_name. For an XLM-R tokenizer these map to <unk>; kept for parity.
CLS_TOKEN, SEP_TOKEN, PAD_TOKEN = "[CLS]", "[SEP]", "[PAD]"

WORDPIECE = "wordpiece"  # bert-base-multilingual-cased: continuation tokens start with "##"
SENTENCEPIECE = "sentencepiece"  # xlm-roberta-large: word starts carry "▁"


@dataclass(frozen=True, eq=False)
class Window:
    """One model input: ``[CLS] tokens [SEP]`` (SEP dropped when cut at the limit)."""

    input_ids: np.ndarray  # int64, 1-D, <= max_window_tokens
    tokens: tuple[str, ...]  # the token strings of input_ids, what the word merge reads

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass(eq=False)
class Plan:
    """One text, tokenised and cut into windows, with what :meth:`Lingua2.assemble` needs."""

    windows: list[Window]
    chunks: list[str]  # each window's text (detokenised); rate >= 1 returns "".join(chunks)
    model_tokens: int  # tokens of the whole text under the model's tokenizer (no specials)
    tokens_before: int  # cl100k_base tokens of the original text (LinguaResult.tokens_before)
    window_tokens: int = field(init=False)  # sum of window lengths: the forward-pass cost

    def __post_init__(self) -> None:
        self.window_tokens = sum(len(w) for w in self.windows)

    @property
    def tokens(self) -> int:
        """Total model tokens of the text (for batch budgets and metrics)."""
        return self.model_tokens


@dataclass(frozen=True)
class LinguaResult:
    text: str
    tokens_before: int  # cl100k_base tokens, as llmlingua's origin_tokens
    tokens_after: int  # cl100k_base tokens, as llmlingua's compressed_tokens


class Backend(Protocol):
    name: str  # "torch" | "onnx" | "onnx-int8"
    device: str  # "cpu" | "cuda" | "mps"

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """int64 (n, L) ids and mask -> float32 logits (n, L, 2)."""
        ...


@lru_cache(maxsize=4)
def _encoding(name: str):
    import tiktoken

    return tiktoken.get_encoding(name)


def detect_word_scheme(tokenizer: Any) -> str:
    """llmlingua decides by model name; accept the names and fall back on the vocabulary."""
    name = str(getattr(tokenizer, "name_or_path", "") or "")
    if "bert-base-multilingual-cased" in name:
        return WORDPIECE
    if "xlm-roberta-large" in name:
        return SENTENCEPIECE
    kind = type(tokenizer).__name__.lower()
    if "xlmroberta" in kind or "sentencepiece" in kind or "camembert" in kind:
        return SENTENCEPIECE
    return WORDPIECE


def _strip_punctuation(word: str) -> str:
    start, end = 0, len(word)
    while start < end and _is_punct(word[start]):
        start += 1
    while end > start and _is_punct(word[end - 1]):
        end -= 1
    return word[start:end]


def _is_punct(ch: str) -> bool:
    return ch.isspace() or ch == "▁" or unicodedata.category(ch).startswith("P")


def normalize_word(word: str) -> str:
    """How force words and model words are compared: punctuation stripped, casefolded."""
    return _strip_punctuation(word).casefold()


def force_word_set(force_words: Iterable[str]) -> frozenset[str]:
    """Normalised force words, plus their alphanumeric pieces: the model's tokenizer splits
    words at punctuation ("GPT-4" becomes "GPT", "-", "4"), so the pieces are what match."""
    out: set[str] = set()
    for word in force_words:
        norm = normalize_word(word)
        if norm:
            out.add(norm)
            out.update(p.casefold() for p in re.findall(r"\w+", norm))
    return frozenset(out)


def softmax_keep(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis in float32 (as torch's F.softmax); label 1's probability."""
    x = np.asarray(logits, dtype=np.float32)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True))[..., 1]


class Lingua2:
    """LLMLingua-2 with plan / keep_probabilities / assemble kept apart (see module doc).

    ``tokenizer`` is a Hugging Face tokenizer (fast or slow); ``backend`` runs the token
    classifier. ``plan`` and ``assemble`` are pure CPU work and safe to call from several
    threads; ``keep_probabilities`` calls the backend.
    """

    def __init__(
        self,
        tokenizer: Any,
        backend: Backend,
        max_window_tokens: int = MAX_WINDOW_TOKENS,
        *,
        batch_size: int = 16,
        word_scheme: str | None = None,
        encoding: str = TOKEN_WEIGHT_ENCODING,
    ) -> None:
        if max_window_tokens < 3:
            raise ValueError("max_window_tokens must leave room for [CLS], [SEP] and a token")
        self.tokenizer = tokenizer
        self.backend = backend
        self.max_window_tokens = max_window_tokens
        self.batch_size = max(1, batch_size)
        self.word_scheme = word_scheme or detect_word_scheme(tokenizer)
        if self.word_scheme not in (WORDPIECE, SENTENCEPIECE):
            raise ValueError(f"unknown word scheme {self.word_scheme!r}")
        self.encoding_name = encoding
        self.special_tokens = frozenset(
            v
            for k, v in tokenizer.special_tokens_map.items()
            if k != "additional_special_tokens" and isinstance(v, str)
        )
        ids = tokenizer.convert_tokens_to_ids([CLS_TOKEN, SEP_TOKEN, PAD_TOKEN])
        self._cls_id, self._sep_id, self._pad_id = (int(i) for i in ids)
        # Texts longer than the model's 512 are expected (they are cut into windows): silence
        # transformers' one-time "sequence length is longer than the maximum" warning.
        warned = getattr(tokenizer, "deprecation_warnings", None)
        if isinstance(warned, dict):
            warned["sequence-length-is-longer-than-the-specified-maximum"] = True
        self._count_lock = threading.Lock()
        self._count_cache: dict[str, int] = {}

    # ---------------------------------------------------------------- token counting
    def count_tokens(self, text: str) -> int:
        """cl100k_base tokens of ``text`` (what LinguaResult reports)."""
        return len(_encoding(self.encoding_name).encode_ordinary(text))

    def _word_weight(self, word: str) -> int:
        n = self._count_cache.get(word)
        if n is None:
            n = len(_encoding(self.encoding_name).encode_ordinary(word))
            with self._count_lock:
                if len(self._count_cache) >= 200_000:
                    self._count_cache.clear()
                self._count_cache[word] = n
        return n

    # ---------------------------------------------------------------- step 1: plan
    def _chunk(self, tokens: Sequence[str]) -> list[str]:
        """llmlingua's __chunk_context: pieces of <= max_len + 1 tokens ending at a chunk end."""
        max_len = self.max_window_tokens - 2
        n = len(tokens)
        chunks: list[str] = []
        st = 0
        while st < n:
            if st + max_len > n - 1:
                chunks.append(self.tokenizer.convert_tokens_to_string(list(tokens[st:n])))
                break
            ed = st + max_len
            for j in range(ed - st):
                if tokens[ed - j] in CHUNK_END_TOKENS:
                    ed -= j
                    break
            chunks.append(self.tokenizer.convert_tokens_to_string(list(tokens[st : ed + 1])))
            st = ed + 1
        return chunks

    def _window(self, chunk: str) -> Window:
        tokens = [CLS_TOKEN, *self.tokenizer.tokenize(chunk), SEP_TOKEN][: self.max_window_tokens]
        ids = np.asarray(self.tokenizer.convert_tokens_to_ids(tokens), dtype=np.int64)
        # The merge reads tokens back from the ids, as llmlingua does (unknown -> [UNK]).
        back = tuple(self.tokenizer.convert_ids_to_tokens(ids.tolist()))
        return Window(input_ids=ids, tokens=back)

    def plan(self, text: str) -> Plan:
        tokens = self.tokenizer.tokenize(text)
        chunks = self._chunk(tokens)
        return Plan(
            windows=[self._window(c) for c in chunks],
            chunks=chunks,
            model_tokens=len(tokens),
            tokens_before=self.count_tokens(text),
        )

    # ---------------------------------------------------------------- step 2: model
    def batch_arrays(self, windows: Sequence[Window]) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded ids and attention mask, as long as the longest window only."""
        width = max(len(w) for w in windows)
        ids = np.full((len(windows), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(windows), width), dtype=np.int64)
        for i, w in enumerate(windows):
            ids[i, : len(w)] = w.input_ids
            mask[i, : len(w)] = 1
        return ids, mask

    def keep_probabilities(self, windows: list[Window]) -> list[np.ndarray]:
        """One forward pass over ``windows``; per window, P(keep) of each of its tokens."""
        if not windows:
            return []
        ids, mask = self.batch_arrays(windows)
        logits = self.backend.forward(ids, mask)
        probs = softmax_keep(logits)
        return [probs[i, : len(w)].copy() for i, w in enumerate(windows)]

    # ---------------------------------------------------------------- step 3: assemble
    def _begins_word(self, token: str) -> bool:
        if self.word_scheme == WORDPIECE:
            return not token.startswith("##")
        return token in string.punctuation or token.startswith("▁")

    def _pure(self, token: str) -> str:
        # llmlingua strips with lstrip("##") / lstrip("▁"): a character set, kept as is.
        return token.lstrip("#") if self.word_scheme == WORDPIECE else token.lstrip("▁")

    def words(self, window: Window, probs: np.ndarray) -> tuple[list[str], list[Any]]:
        """Merge sub-word tokens into words; a word's probability is its tokens' mean.

        The mean is accumulated in float32 one token at a time, exactly as llmlingua's
        ``sum(p) / len(p)`` over numpy float32 scalars, so thresholds match bit for bit.
        """
        words: list[str] = []
        token_probs: list[list[Any]] = []
        for token, prob in zip(window.tokens, probs.astype(np.float32, copy=False)):
            if token in self.special_tokens:
                continue
            if self._begins_word(token) or not words:
                words.append(token)
                token_probs.append([prob])
            else:
                words[-1] += self._pure(token)
                token_probs[-1].append(prob)
        return words, [sum(p) / len(p) for p in token_probs]

    def _display(self, word: str) -> str:
        return word.lstrip("▁") if self.word_scheme == SENTENCEPIECE else word

    def select(
        self, window: Window, probs: np.ndarray, rate: float, force: frozenset[str] = frozenset()
    ) -> tuple[list[str], list[bool]]:
        """The window's words and which of them are kept at ``rate``."""
        words, word_probs = self.words(window, probs)
        if not words:
            return [], []
        if force:
            one = np.float32(1.0)
            word_probs = [one if normalize_word(self._display(w)) in force else p for w, p in zip(words, word_probs)]
        reduce_rate = max(0, 1 - rate)
        weights = [self._word_weight(w) for w in words]
        expanded = np.repeat(np.asarray(word_probs, dtype=np.float32), weights)
        threshold = np.percentile(expanded, int(100 * reduce_rate + 1))
        keep = [bool(p > threshold or (threshold == 1.0 and p == threshold)) for p in word_probs]
        return words, keep

    def assemble(
        self,
        plan: Plan,
        probs: list[np.ndarray],
        rate: float,
        force_words: Iterable[str] = (),
    ) -> LinguaResult:
        """The compressed text of ``plan`` from its windows' keep probabilities.

        With ``rate >= 1`` nothing is dropped and ``probs`` is not read (may be empty).
        """
        if max(0, 1 - rate) <= 0:
            text = "".join(plan.chunks)
        else:
            if len(probs) != len(plan.windows):
                raise ValueError(f"{len(probs)} probability arrays for {len(plan.windows)} windows")
            force = force_word_set(force_words)
            pieces = []
            for window, p in zip(plan.windows, probs):
                words, keep = self.select(window, p, rate, force)
                kept = [w for w, k in zip(words, keep) if k]
                pieces.append(self.tokenizer.convert_tokens_to_string(kept) if kept else "")
            text = "".join(pieces)
        return LinguaResult(text=text, tokens_before=plan.tokens_before, tokens_after=self.count_tokens(text))

    # ---------------------------------------------------------------- all in one
    def compress(self, text: str, rate: float, force_words: Iterable[str] = ()) -> LinguaResult:
        plan = self.plan(text)
        probs: list[np.ndarray] = []
        if max(0, 1 - rate) > 0:
            for i in range(0, len(plan.windows), self.batch_size):
                probs.extend(self.keep_probabilities(plan.windows[i : i + self.batch_size]))
        return self.assemble(plan, probs, rate, force_words)
