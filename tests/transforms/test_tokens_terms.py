"""Token counting (lazy, exact, labelled fallback) and question-term extraction."""

from __future__ import annotations

import base64
import logging
import subprocess
import sys
import time

import pytest

from headroom.transforms import tokens
from headroom.transforms.terms import extract_terms


@pytest.fixture
def fresh_tokens(monkeypatch):
    """Forget the loaded encoding for one test, and again afterwards."""
    tokens._reset_for_tests()
    yield monkeypatch
    monkeypatch.undo()
    tokens._reset_for_tests()


def test_importing_the_pipeline_does_not_load_tiktoken():
    code = ("import sys, headroom.transforms, headroom.transforms.pipeline; "
            "print('tiktoken' in sys.modules, headroom.transforms.tokens._state)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "unloaded"]


def test_counts_are_real_o200k_counts():
    import tiktoken

    text = "Headroom cuts tokens: ünïcødé, JSON {\"a\": [1, 2]}, code `x = y`."
    assert tokens.count_tokens(text) == len(tiktoken.get_encoding("o200k_base").encode_ordinary(text))
    assert tokens.is_estimate() is False
    assert tokens.count_tokens("") == 0


def test_the_encoding_is_tiktokens_own_o200k_base():
    """Headroom builds o200k_base from tiktoken's file with a faster parser (start-up time):
    the same pattern, special tokens and rank table as tiktoken's definition, and the same
    counts on text that exercises each part of the pattern."""
    import tiktoken
    from tiktoken.load import read_file_cached
    from tiktoken_ext import openai_public

    definition = openai_public.o200k_base()
    assert tokens.O200K_PATTERN == definition["pat_str"]
    assert tokens.O200K_SPECIAL == definition["special_tokens"]
    assert tokens.parse_ranks(read_file_cached(tokens.O200K_URL, tokens.O200K_SHA256)) == definition["mergeable_ranks"]
    theirs = tiktoken.get_encoding("o200k_base")
    ours = tokens.load_encoding()
    texts = ["I'LL say it's 12345 ünïcødé\r\n\n  x\t\tëÉ", "def f(x):\n    return {'a': [1, 2]}  # ok\n",
             "日本語のテキストと한국어 текст", "   trailing   ", "<|endoftext|> is ordinary text here"]
    assert [ours(t) for t in texts] == [theirs.encode_ordinary(t) for t in texts]


def test_a_rank_file_with_a_missing_rank_is_refused():
    assert tokens.parse_ranks(b"YQ== 0\nYg== 1\n") == {b"a": 0, b"b": 1}
    lines = b"".join(b"%s %d\n" % (base64.b64encode(b"t%d" % i), i) for i in range(1000))
    assert tokens.parse_ranks(lines, chunk=7) == {b"t%d" % i: i for i in range(1000)}  # lines never cut
    assert tokens.parse_ranks(lines.rstrip(b"\n"), chunk=100) == {b"t%d" % i: i for i in range(1000)}
    with pytest.raises(ValueError, match="token and a rank"):
        tokens.parse_ranks(b"YQ== 0\nYg==\n")


def test_unavailable_encoding_gives_labelled_estimates_and_one_warning(fresh_tokens, caplog):
    def offline():
        raise ConnectionError("no route to openaipublic.blob.core.windows.net")

    fresh_tokens.setattr(tokens, "load_encoding", offline)
    with caplog.at_level(logging.WARNING, logger="headroom.tokens"):
        counts = [tokens.count_tokens("some text " * n) for n in range(1, 50)]
        assert tokens.is_estimate() is True
    assert counts == [tokens.estimate_tokens("some text " * n) for n in range(1, 50)]
    warnings = [r for r in caplog.records if r.name == "headroom.tokens"]
    assert len(warnings) == 1 and "estimates" in warnings[0].getMessage()


def test_offline_the_warning_is_one_line_with_the_fix(tmp_path):
    """A real tiktoken with an empty cache and no network (a proxy nobody listens on): the
    proxy's log gets one line saying what it means and what to do, not the download error."""
    code = "from headroom.transforms import tokens; tokens.count_tokens('x'); print(tokens.is_estimate())"
    env = {"PATH": "/usr/bin:/bin", "TIKTOKEN_CACHE_DIR": str(tmp_path), "HTTPS_PROXY": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.strip() == "True", out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "token counts are estimates" in line and f"TIKTOKEN_CACHE_DIR=<that folder> (now: {tmp_path})" in line
    assert "http" not in line.lower() and "Traceback" not in out.stderr


def test_a_hanging_download_does_not_hang_requests(fresh_tokens):
    fresh_tokens.setattr(tokens, "LOAD_TIMEOUT_S", 0.05)
    fresh_tokens.setattr(tokens, "load_encoding", lambda: time.sleep(2))  # a slow load: the behaviour under test
    start = time.monotonic()
    assert tokens.count_tokens("abcd" * 10) == 10
    assert time.monotonic() - start < 1 and tokens.is_estimate()


def test_count_cache_is_bounded_by_characters():
    cache = tokens.CountCache(max_chars=800)
    texts = [f"{i:03d}" * 30 for i in range(20)]  # 90 characters each
    assert [cache.count(t) for t in texts] == [tokens.count_tokens(t) for t in texts]
    assert cache.chars <= 800 and len(cache) < 20
    assert texts[-1] in cache and texts[0] not in cache


def test_question_terms():
    terms = extract_terms('Why did order ORD-20417 fail in "eu-west checkout"? '
                          'See issue #4312 and test_refund_rounding.')
    wanted = {"ord-20417", "20417", "eu-west checkout", "4312", "test_refund_rounding", "fail", "checkout"}
    assert wanted <= set(terms.words)
    assert not {"why", "did", "in", "and", "see", "the"} & set(terms.words)
    assert terms.find("status of 4312 is FAILED") == {"4312", "fail"}
    assert terms.find("id 143120 ok") == set()  # numbers match whole numbers only
    short = extract_terms("which type?")
    assert short.find("types: a, b") == {"type"} and short.find("types47.ts") == set()
    assert not extract_terms("what is it?")


def test_one_letter_options_are_terms_matched_as_options():
    from headroom.transforms.scan import Joined

    terms = extract_terms("What does the -w option of ls do?")
    assert "-w" in terms.words
    lines = ["  -w, --width=COLS", "      set output width", "  read-write mode", "  --width is also -W"]
    assert sorted(Joined(lines).texts_with(terms.scan_words[:1])) == [0, 3]  # not "read-write"


def test_a_count_during_the_background_load_does_not_wait_and_is_not_kept(fresh_tokens):
    """The first request after start-up used to wait for the tokenizer's load (~0.3 s): while
    :func:`tokens.warm_up` loads it, counts are estimates, said so, and never cached or
    seeded, so the exact count replaces them as soon as the load is done."""
    import threading

    release = threading.Event()
    real = tokens.load_encoding

    def slow_load():
        release.wait(10)
        return real()

    fresh_tokens.setattr(tokens, "load_encoding", slow_load)
    text = "Headroom counts this sentence with o200k once the tokenizer is loaded. " * 3
    loading = tokens.warm_up()
    start = time.monotonic()
    assert tokens.count_tokens(text) == tokens.estimate_tokens(text)
    assert tokens.count_cached(text) == tokens.estimate_tokens(text)
    tokens.remember(text + "!", 1)
    assert tokens.is_estimate() is True and not tokens.loaded()
    assert time.monotonic() - start < 1  # nothing waited for the load
    release.set()
    loading.join(10)
    exact = len(real()(text))
    assert exact != tokens.estimate_tokens(text)  # the check below can tell the two apart
    assert tokens.count_cached(text) == exact and tokens.count_cached(text + "!") != 1
    assert tokens.is_estimate() is False and tokens.loaded()
