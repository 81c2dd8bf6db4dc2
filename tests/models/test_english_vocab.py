"""The benchmark model's English vocabulary: the same text gives the same vocabulary, and it
splits English prose like BERT's vocabularies do (see testkit.english_vocab)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from testkit import english_vocab
from testkit.tiny_lingua import CORPUS, ENGLISH_ENTRIES

pytest.importorskip("tokenizers")
tiktoken = pytest.importorskip("tiktoken")


@pytest.fixture(scope="module")
def stdlib_counts() -> Counter[str]:
    """Word counts of Python's own docstrings and comments (a few seconds; on every machine)."""
    return english_vocab.count_words(english_vocab.python_doc_lines())


def wordpiece(vocab: list[str]):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tokenizer = Tokenizer(models.WordPiece({token: i for i, token in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tokenizer


def test_the_same_counts_in_any_order_give_the_same_vocabulary(stdlib_counts):
    items = list(stdlib_counts.items())
    random.Random(7).shuffle(items)
    first = english_vocab.build_vocab(stdlib_counts, ENGLISH_ENTRIES)
    again = english_vocab.build_vocab(Counter(dict(items)), ENGLISH_ENTRIES)
    assert first == again
    assert len(first) == ENGLISH_ENTRIES == len(set(first))
    assert first[:5] == list(english_vocab.SPECIAL_TOKENS)


def test_counting_the_corpus_twice_gives_the_same_counts():
    lines = list(english_vocab.python_doc_lines())[:20_000]
    assert english_vocab.count_words(lines) == english_vocab.count_words(reversed(lines))


def test_english_prose_splits_like_bert(stdlib_counts):
    """mBERT: about 1.2-1.4 tokens per cl100k token of English; an all-character vocabulary ~4."""
    tokenizer = wordpiece(english_vocab.build_vocab(stdlib_counts, ENGLISH_ENTRIES))
    text = CORPUS
    model_tokens = len(tokenizer.encode(text, add_special_tokens=False).ids)
    cl100k = len(tiktoken.get_encoding("cl100k_base").encode_ordinary(text))
    assert 1.0 <= model_tokens / cl100k <= 1.45, (model_tokens, cl100k)
    assert "[UNK]" not in tokenizer.encode(text).tokens
