"""Local stand-ins for the LLMLingua-2 model: built in seconds, no hub download.

``build_tiny_model`` makes a tiny BERT token classifier (2 labels, seeded random weights)
with a WordPiece tokenizer whose vocabulary is counted here from a small English corpus; it is what the tests
compare against llmlingua itself. ``build_real_size_model`` makes a random model with the
shapes of ``bert-base-multilingual-cased`` (for latency benchmarks only).

llmlingua picks its word rules from the model *name*, which must contain
``bert-base-multilingual-cased``; both builders name their folder accordingly.
"""

from __future__ import annotations

import inspect
import string
from pathlib import Path

TINY_NAME = "tiny-bert-base-multilingual-cased"
ENGLISH_ENTRIES = 12_000  # see build_real_size_model
REAL_SIZE_NAME = f"random-en{ENGLISH_ENTRIES // 1000}k-bert-base-multilingual-cased"  # a new vocabulary, a new folder
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

CORPUS = """\
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step.
Meeting notes: the team reviewed the quarterly budget, discussed hiring plans, and agreed on the roadmap.
Alice asked whether the deployment on Tuesday would be delayed; Bob said the database migration was finished.
Revenue grew by 12 percent in 2023, while costs fell 3.5 percent compared with the previous year.
Please summarise the following document and answer the question at the end in one sentence.
The proxy compresses long prompts before they are sent to the language model, which saves tokens and money.
Python is a programming language that lets you work quickly and integrate systems more effectively.
In the morning we walked to the station, bought tickets, and took the train to the coast.
The committee will meet again on March 14 at 10:30 to vote on the proposal for the new library.
Error handling matters: every request should either succeed or fail with a clear message.
She wrote the report, checked the figures twice, and sent it to the manager before noon.
Weather forecast: rain in the north, sunshine in the south, temperatures between 8 and 17 degrees.
The museum opened a new exhibition about ancient maps, navigation, and the history of exploration.
Customers reported that the application was slow when uploading large files over mobile networks.
To install the package, run pip install and then restart the server so the changes take effect.
Questions? Contact support at any time; we usually reply within 24 hours on working days.
"""


def _corpus_lines() -> list[str]:
    return [line for line in CORPUS.splitlines() if line.strip()]


SUFFIXES = ("ing", "ed", "s", "es", "ly", "er", "ers", "tion", "ment", "ness", "able", "al", "ion", "ive")


def _wordpiece_vocab(vocab_size: int) -> dict[str, int]:
    """A WordPiece vocabulary counted from CORPUS, deterministically.

    (``tokenizers``' WordPieceTrainer is not deterministic between runs, so the vocabulary
    is made here from word counts: special tokens, every printable character as a word
    start and as a ``##`` continuation, common suffixes, then corpus words seen at least
    twice, most frequent first. Words seen once are split into pieces.)
    """
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    split = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for line in _corpus_lines():
        counts.update(word for word, _ in split.pre_tokenize_str(normalizer.normalize_str(line)))
    alphabet = [c for c in string.printable if not c.isspace()]
    ordered = [*SPECIAL_TOKENS, *alphabet, *(f"##{c}" for c in alphabet), *(f"##{s}" for s in SUFFIXES)]
    ordered += [w for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= 2]
    vocab: dict[str, int] = {}
    for token in ordered:
        if len(vocab) >= vocab_size:
            break
        vocab.setdefault(token, len(vocab))
    return vocab


def _write_vocab(path: Path, vocab: dict[str, int]) -> Path:
    ordered = sorted(vocab.items(), key=lambda kv: kv[1])
    path.write_text("".join(token + "\n" for token, _ in ordered), encoding="utf-8")
    return path


def _save(dest: Path, vocab: dict[str, int], config_kwargs: dict, seed: int, classifier_scale: float) -> Path:
    import torch
    from transformers import BertConfig, BertForTokenClassification, BertTokenizerFast

    dest.mkdir(parents=True, exist_ok=True)
    vocab_file = _write_vocab(dest / "vocab.txt", vocab)
    options = dict(do_lower_case=False, tokenize_chinese_chars=True, strip_accents=None)
    if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters:  # transformers >= 5
        tokenizer = BertTokenizerFast(vocab=dict(vocab), **options)
    else:
        tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), **options)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(str(dest))

    config = BertConfig(
        vocab_size=len(vocab),
        max_position_embeddings=512,
        num_labels=2,
        pad_token_id=vocab["[PAD]"],
        architectures=["BertForTokenClassification"],
        **config_kwargs,
    )
    torch.manual_seed(seed)
    model = BertForTokenClassification(config).eval()
    with torch.no_grad():
        # Random init gives logits near zero (every probability ~0.5); spread them so that
        # keep decisions are well separated, as with a trained model.
        model.classifier.weight.mul_(classifier_scale)
        model.classifier.bias.uniform_(-0.5, 0.5)
    model.save_pretrained(str(dest))
    return dest


def build_tiny_model(dest_dir: Path, *, seed: int = 1234) -> Path:
    """Build the tiny model in ``dest_dir / TINY_NAME`` and return that folder."""
    dest = Path(dest_dir) / TINY_NAME
    return _save(
        dest,
        _wordpiece_vocab(vocab_size=600),
        dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
        seed=seed,
        classifier_scale=40.0,
    )


def build_real_size_model(dest_dir: Path, *, seed: int = 1234, vocab_size: int = 119547,
                          english_entries: int = ENGLISH_ENTRIES) -> Path:
    """A random-weight model with bert-base-multilingual-cased's shapes (~178M parameters).

    Its latency is the real model's only if it sees as many tokens, so its vocabulary splits
    English like mBERT's: ``english_entries`` cased WordPiece entries counted from this
    machine's manual pages and Python docstrings (``testkit.english_vocab``, cached in
    ``dest_dir``), padded with entries no text produces up to mBERT's ``vocab_size`` (the
    embedding's shape). mBERT spends most of its 119,547 entries on a hundred other languages
    and splits English at about 1.2-1.4 tokens per cl100k token; 12,000 English entries give
    1.23 on the benchmark's prose (100,000 would give 1.03, a bert-base-uncased-like 30,000
    lower-cased 1.06: both too few tokens, so flattering latencies).
    """
    from testkit.english_vocab import cached_vocab

    dest = Path(dest_dir) / REAL_SIZE_NAME
    entries = cached_vocab(Path(dest_dir) / f"english-wordpiece-{english_entries}.txt", english_entries)
    vocab = {token: i for i, token in enumerate(entries)}
    i = 0
    while len(vocab) < vocab_size:
        token = f"synthetic{i}" if i % 2 == 0 else f"##syn{i}"
        vocab.setdefault(token, len(vocab))
        i += 1
    return _save(
        dest,
        vocab,
        dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
        seed=seed,
        classifier_scale=10.0,
    )


def benchmark(dest_dir: Path, threads: int = 2, repeats: int = 8) -> list[tuple[str, str, float, float]]:
    """Forward latency of torch fp32 / ONNX fp32 / ONNX int8 on the real-size random model
    (built and exported into ``dest_dir`` if missing): rows (backend, shape, median, min) ms."""
    import statistics
    import time

    import numpy as np

    from headroom.models.export import INT8_FILE, export_onnx
    from headroom.models.onnx_backend import OnnxBackend
    from headroom.models.torch_backend import TorchBackend

    model = Path(dest_dir) / REAL_SIZE_NAME
    if not (model / "config.json").is_file():
        build_real_size_model(Path(dest_dir))
    onnx_dir = model.parent / f"{model.name}-onnx"
    if not (onnx_dir / INT8_FILE).is_file():
        export_onnx(str(model), str(onnx_dir), int8=True)
    backends = [
        ("torch fp32", TorchBackend.from_pretrained(str(model), threads=threads)),
        ("onnx fp32", OnnxBackend(onnx_dir / "model.onnx", threads=threads)),
        ("onnx int8", OnnxBackend(onnx_dir / INT8_FILE, threads=threads)),
    ]
    rng = np.random.default_rng(0)
    rows = []
    for n, length in ((1, 512), (1, 64), (8, 64)):
        ids = rng.integers(5, 1000, (n, length)).astype(np.int64)
        mask = np.ones_like(ids)
        for name, backend in backends:
            for _ in range(2):
                backend.forward(ids, mask)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                backend.forward(ids, mask)
                times.append((time.perf_counter() - start) * 1000)
            rows.append((name, f"{n}x{length}", statistics.median(times), min(times)))
            print(f"{name:11s} {n}x{length:<4d} median {rows[-1][2]:8.1f} ms   min {rows[-1][3]:8.1f} ms", flush=True)
    return rows


if __name__ == "__main__":  # python -m testkit.tiny_lingua /tmp/lingua-bench [threads]
    import sys

    benchmark(
        Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/lingua-bench"), int(sys.argv[2]) if len(sys.argv) > 2 else 2
    )
