"""A cased English WordPiece vocabulary, built deterministically from text on this machine.

Why: the benchmark's random real-size LLMLingua-2 model needs a tokenizer that splits English
like ``bert-base-multilingual-cased`` does, or every latency it reports is for the wrong
number of tokens. A vocabulary counted from a few test sentences split ordinary prose into
about 3 model tokens per ``cl100k_base`` token; BERT's vocabularies give 1.0-1.4.

Why not ``tokenizers``' ``WordPieceTrainer``: two trainings on the same lines give different
vocabularies (about 1% of the entries differ; ties between equally frequent merges are broken
in hash-map order), so a benchmark model built twice would not be the same model. This
builder is plain counting with every tie broken by the string itself:

1. Words are counted as BERT's pre-tokenizer cuts them (runs of letters/digits; each
   punctuation character alone). Punctuation and every character seen often enough become
   entries, as word starts and as ``##`` continuations.
2. The most frequent words become whole entries (``word_share`` of the budget).
3. The rest of the budget goes to pieces of the words left out (seen once included): word-start prefixes and
   ``##`` suffixes, ranked by how many characters they would cover (count x length).

WordPiece tokenisation is greedy longest-match, so only the *set* matters for the splitting;
the order (ids) is fixed too, so that the model's weights line up run after run.

Corpus: English manual pages (``/usr/share/man/man[1-8]``, roff stripped, no ``man`` process
per page) and the docstrings and comments of Python's standard library, in sorted path
order. Both exist on any Linux machine with Python; the built vocabulary is cached by the
caller (see ``cached_vocab``).
"""

from __future__ import annotations

import gzip
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_WORD_CHARS = 24  # longer "words" are hashes, paths, base64: never whole entries
MAX_PIECE_CHARS = 10
# BERT's pre-tokenizer: a run of word characters, or one punctuation/symbol character.
WORD = re.compile(r"[^\W_]+|[^\w\s]|_", re.UNICODE)
# roff escapes: fonts (\fB \f[CR]), named characters (\(em \[em]), strings and registers
# (\*(xx \n[x]), size changes (\s-1), then any other backslash pair.
ROFF_ESCAPE = re.compile(r"\\f(\[[^\]]*\]|\(..|.)|\\\(..|\\\[[^\]]*\]|\\[*n](\[[^\]]*\]|\(..|.)|\\s[-+]?\d+|\\.")
DOCSTRING = re.compile(r'"""(.*?)"""', re.DOTALL)
COMMENT = re.compile(r"^\s*# ?(.*)$", re.MULTILINE)


def man_lines(root: Path = Path("/usr/share/man")) -> Iterator[str]:
    """The text lines of the English manual pages, roff requests dropped, escapes removed."""
    for path in sorted(root.glob("man[1-8]/*.gz")):
        try:
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
                data = f.read()
        except (OSError, EOFError):
            continue  # a broken or unreadable page: skip it
        for line in data.splitlines():
            if line.startswith((".", "'")):
                continue
            line = ROFF_ESCAPE.sub(lambda m: "-" if m.group(0) == "\\-" else "", line)
            if line.strip():
                yield line


def python_doc_lines(root: Path | None = None) -> Iterator[str]:
    """Docstrings and comments of the standard library's ``.py`` files (tests excluded)."""
    root = root or Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts or "test" in path.parts or "tests" in path.parts:
            continue
        try:
            source = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for block in DOCSTRING.findall(source) + COMMENT.findall(source):
            yield from (line for line in block.splitlines() if line.strip())


def corpus_lines() -> Iterator[str]:
    yield from man_lines()
    yield from python_doc_lines()


def count_words(lines: Iterable[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in lines:
        counts.update(WORD.findall(line))
    return counts


def build_vocab(counts: Counter[str], size: int, *, word_share: float = 0.7, min_count: int = 2,
                min_char_count: int = 20) -> list[str]:
    """Up to ``size`` entries (special tokens first); the same counts give the same list."""
    chars: Counter[str] = Counter()
    for word, n in counts.items():
        for c in word:
            chars[c] += n
    alphabet = sorted(c for c, n in chars.items() if n >= min_char_count)
    out: list[str] = [*SPECIAL_TOKENS, *alphabet, *(f"##{c}" for c in alphabet if c.isalnum())]
    taken = set(out)

    def add(tokens: Iterable[str]) -> None:
        for token in tokens:
            if len(out) >= size:
                return
            if token not in taken:
                taken.add(token)
                out.append(token)

    words = [(w, n) for w, n in counts.items() if 1 < len(w) <= MAX_WORD_CHARS]
    words.sort(key=lambda wn: (-wn[1], wn[0]))
    budget = int(size * word_share)
    add(w for w, n in words[:budget] if n >= min_count)
    pieces: Counter[str] = Counter()
    for word, n in words:
        if word in taken:
            continue
        for i in range(2, min(len(word), MAX_PIECE_CHARS + 1)):
            pieces[word[:i]] += n * i
        for i in range(max(1, len(word) - MAX_PIECE_CHARS), len(word) - 1):
            pieces["##" + word[i:]] += n * (len(word) - i)
    add(p for p, _ in sorted(pieces.items(), key=lambda pn: (-pn[1], pn[0])))
    return out


def cached_vocab(path: Path, size: int = 100_000) -> list[str]:
    """The vocabulary at ``path`` (one entry a line), built from this machine's corpus first if missing."""
    if path.is_file():
        return path.read_text(encoding="utf-8").splitlines()
    vocab = build_vocab(count_words(corpus_lines()), size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(token + "\n" for token in vocab), encoding="utf-8")
    tmp.replace(path)
    return vocab
