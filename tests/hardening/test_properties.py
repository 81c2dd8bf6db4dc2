"""Properties of every transform, on arbitrary (type-correct) input, with hypothesis.

- never raises: any text, any question, any limits, any tool name;
- deterministic: the same input gives the same bytes (the prompt cache depends on it);
- idempotent where it should be: a normaliser applied to its own output changes nothing,
  and a lossless compressor's output is not rewritten again (see each test for why a
  lossy one need not be: the memo never recompresses an output);
- lossless means lossless: the compact JSON notation decodes back to exactly the values,
  key order, number spelling and lone surrogates included.

Small limits make small inputs take the lossy paths. Runs are bounded (``SETTINGS``).
"""

from __future__ import annotations

import asyncio
import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from headroom.state.memory_store import MemoryStore
from headroom.transforms import (
    PipelineOptions,
    ccr,
    fit,
    json_compressor,
    log_compressor,
    needs_work,
    run_pipeline,
    search_compressor,
    table_compressor,
    text_compressor,
)
from headroom.transforms.base import Brief, Limits
from headroom.transforms.blocks import find_blocks, question_text, replace_blocks
from headroom.transforms.detect import FILE_TOOLS, SEARCH_TOOLS, SHELL_TOOLS, detect
from headroom.transforms.json_decode import decode
from headroom.transforms.json_format import encode, loads
from headroom.transforms.memo import MemoEntry
from headroom.transforms.router import compress_block
from headroom.transforms.terms import extract_terms

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(SETTINGS, max_examples=40)  # the slower, whole-pipeline properties

# --- strategies -----------------------------------------------------------------------------

# Every unicode plane, lone surrogates, controls, invisible and separator characters.
odd_chars = st.characters() | st.sampled_from(
    ["\x00", "\x1b", "\r", "\t", "\u00a0", "\u200b", "\u200d", "\ufeff", "\u2028", "\ud800", "\udfff",
     "\U0001f680", "\U0010ffff", "\u0130", "\u2026", ",", '"', "\\", "#", ":", "-", "/", "{", "["])
words = st.sampled_from(["error", "ERROR", "warning", "ok", "PASSED", "FAILED", "Traceback (most recent call last):",
                         "src/app.py", "id", "ord_123", "4312", "null", "true", "1.10", "-0", "…", "  ", "\t",
                         "timeout", "user", "status", "NaN", "panic:", "=== FAILURES ===", "\x1b[31m", "%"])
free_text = st.text(odd_chars, max_size=300)
phrase = st.lists(words | st.text(odd_chars, max_size=6), max_size=8).map(" ".join)


def _lines(line: st.SearchStrategy, max_lines: int = 60) -> st.SearchStrategy:
    return st.tuples(st.lists(line, max_size=max_lines), st.sampled_from(["\n", "\r\n"])).map(
        lambda t: t[1].join(t[0]))


log_line = st.one_of(
    st.tuples(st.integers(0, 59), st.sampled_from(["INFO", "WARN", "ERROR", "DEBUG"]), phrase).map(
        lambda t: f"2024-05-01T10:00:{t[0]:02d} {t[1]} {t[2]}"),
    st.sampled_from(["Traceback (most recent call last):", '  File "a.py", line 3, in f', "ValueError: bad",
                     "=== FAILURES ===", "=== 3 passed in 0.1s ===", "tests/test_a.py::test_x PASSED",
                     "progress 10%\rprogress 90%", "\x1b[32mok\x1b[0m", "", "same line", "same line",
                     "    at com.x.Y(Y.java:1)", "panic: boom", "goroutine 1 [running]:"]),
    phrase,
)
_grep_match = st.tuples(st.sampled_from(["src/a.py", "lib/b.ts", "./c.go", "d e/f.rs", "x", "src/a.py"]),
                        st.integers(0, 999), st.sampled_from([":", ":", "-"]), phrase).map(
    lambda t: f"{t[0]}:{t[1]}{t[2]}{t[3]}")
grep_line = st.one_of(  # mostly matches: search output is detected by its share of match lines
    _grep_match, _grep_match, _grep_match, _grep_match,
    st.sampled_from(["--", "src/only/path.py", "docs/", "12:heading entry", "3-context", "a/b/c.txt"]),
    phrase,
)
_table_row = st.tuples(st.sampled_from(["api", "web-1", "db", "api"]),
                       st.sampled_from(["Running", "Running", "CrashLoopBackOff", "ok"]), st.integers(0, 99)).map(
    lambda t: f"{t[0]}   {t[1]}   {t[2]}d")
table_line = st.one_of(  # mostly aligned rows: tables are detected by their share of such rows
    _table_row, _table_row, _table_row,
    st.lists(phrase, min_size=1, max_size=4).map(lambda cells: "| " + " | ".join(cells) + " |"),
    phrase,
)
table_text = st.tuples(st.sampled_from(["NAME   STATUS   AGE", "| a | b | c |\n|---|---|---|"]),
                       _lines(table_line)).map("\n".join)

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(odd_chars, max_size=20), words)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
    st.text(odd_chars, max_size=6) | words, inner, max_size=5), max_leaves=30)


@st.composite
def table_arrays(draw):
    """Lists of similar objects, the shape the notation writes as a table."""
    keys = draw(st.lists(st.text(odd_chars, max_size=5) | words, min_size=1, max_size=5, unique=True))
    nested = draw(st.lists(st.text(odd_chars, max_size=4), min_size=1, max_size=2, unique=True))
    rows = []
    for _ in range(draw(st.integers(3, 12))):
        row = {}
        for key in keys:
            if draw(st.integers(0, 5)) == 0:
                continue  # a missing cell
            if draw(st.booleans()):
                row[key] = draw(json_scalars)
            else:
                row[key] = {k: draw(json_scalars) for k in nested}
        rows.append(row or {keys[0]: None})
    if draw(st.booleans()):
        return {f"k{i}": row for i, row in enumerate(rows)}  # keyed table
    return rows


any_json = st.one_of(json_values, table_arrays(), st.lists(table_arrays(), max_size=3),
                     st.dictionaries(words, table_arrays(), max_size=3))


def _json_text(value, indent) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False)


json_text = st.tuples(any_json, st.sampled_from([None, 1, 2]), st.sampled_from(["", "HTTP/1.1 200 OK\n\n"]),
                      st.sampled_from(["", "\nexit code 1"])).map(lambda t: t[2] + _json_text(t[0], t[1]) + t[3])
_frame = st.sampled_from(['  File "app.py", line 12, in walk', "    return walk(node.child)",
                          '  File "lib/x.py", line 3, in <lambda>', "    at com.shop.Quote.price(Quote.java:88)",
                          "    at java.base/java.lang.Thread.run(Thread.java:840)", "\t... 27 more",
                          "Caused by: java.io.IOException: reset", "RecursionError: maximum recursion depth"])
# Stack traces whose frames repeat (recursion, the same trace logged again), with odd lines mixed in.
trace_text = st.tuples(st.lists(_frame, min_size=1, max_size=6), st.integers(1, 40),
                       st.lists(log_line, max_size=4)).map(
    lambda t: "\n".join(["Traceback (most recent call last):", *(t[0] * t[1]), *t[2]]))
# Whitespace-aligned command output (ps, df, docker ps), columns of uneven widths.
_ps_row = st.tuples(st.sampled_from(["root", "www-data", "app"]), st.integers(1, 99999),
                    st.sampled_from(["0.0", "0.1", "187.3", "—"]), st.sampled_from(["S", "Ssl", "R+", "Z"]),
                    phrase).map(lambda t: f"{t[0]:<9}{t[1]:>6} {t[2]:>5} {t[3]:<5} {t[4]}")
ps_text = _lines(_ps_row, 40).map(lambda rows: "USER       PID  %CPU STAT  COMMAND\n" + rows)
_base_text = st.one_of(free_text, _lines(log_line), _lines(grep_line), table_text, json_text,
                       _lines(phrase, 40), trace_text, ps_text)
# Codex's header in front of a command's output, or half of one.
_envelopes = st.sampled_from([
    "", "Chunk ID: 4f1c2a\nWall time: 0.0312 seconds\nProcess exited with code 1\nOriginal token count: 99\nOutput:\n",
    "Exit code: 0\nWall time: 1 seconds\nOutput:\n", "Chunk ID: x\nOutput:", "Output:\n",
    "Process running with session ID 7\nOutput:\n"])
any_text = st.one_of(_base_text, st.tuples(_envelopes, _base_text).map("".join))

limits = st.builds(Limits, lossy_min_chars=st.integers(0, 400), max_items=st.integers(0, 12),
                   head_items=st.integers(0, 4), tail_items=st.integers(0, 4), max_anomalies=st.integers(0, 5),
                   max_matches=st.integers(0, 8), head_lines=st.integers(0, 5), tail_lines=st.integers(0, 5),
                   nearby_lines=st.integers(0, 3), max_matches_per_file=st.integers(0, 4))
briefs = st.builds(Brief, terms=st.one_of(phrase, free_text).map(extract_terms),
                     ccr_key=st.just("0123456789abcdef"), limits=limits)
tool_names = st.one_of(st.none(), st.sampled_from(sorted(FILE_TOOLS | SEARCH_TOOLS | SHELL_TOOLS)),
                       st.sampled_from(["mcp__srv__grep", "WebFetch", "Bash", "unknown_tool", ""]))
_commands = st.sampled_from(
    ["cat a.json", "ls -la", "pytest -q", "sed -n 1,80p app.py", "grep -rn x .", "tail -400 /var/log/dpkg.log",
     "tail -n 50 notes.txt", "cat logs/app.log.1", "journalctl -u api --no-pager", "kubectl -n prod logs api-0",
     "cat /var/log/nginx/*.log", "head -c 100 'a b.log'", "git show HEAD:src/app.py", "cd srv && tail out",
     "cat", "tail -f", "ps aux", "sed -n '/ERROR/p' server.log", ""])
tool_inputs = st.one_of(
    st.none(),
    st.fixed_dictionaries({"command": _commands}),
    st.fixed_dictionaries({"cmd": _commands}),  # Codex exec_command
    _commands.map(lambda c: {"command": ["bash", "-lc", c]}),  # Codex shell, as argv
    st.fixed_dictionaries({"command": st.lists(st.text(odd_chars, max_size=8), max_size=4)}),
)

COMPRESSORS = {
    "log": log_compressor.compress,
    "search": search_compressor.compress,
    "table": table_compressor.compress,
    "text": text_compressor.compress,
}


def _same(a, b) -> bool:
    """Equal, and equal as bytes (a result carries text, transforms and omitted count)."""
    return a == b and (a is None or a.text.encode("utf-8", "surrogatepass") == b.text.encode("utf-8", "surrogatepass"))


# --- never raises, deterministic ----------------------------------------------------------------


@SETTINGS
@given(any_text, briefs)
def test_each_text_compressor_never_raises_and_is_deterministic(text, brief):
    for name, compress in COMPRESSORS.items():
        first = compress(text, brief)
        assert first is None or (isinstance(first.text, str) and first.text != text), name  # None: unchanged
        assert _same(first, compress(text, brief)), name


@SETTINGS
@given(any_text, briefs, tool_names, tool_inputs)
def test_routing_any_block_never_raises_and_is_deterministic(text, brief, tool, tool_input):
    kind, first = compress_block(text, tool, brief, tool_input)
    again_kind, again = compress_block(text, tool, brief, tool_input)
    assert kind is again_kind and _same(first, again)
    assert detect(text, tool, tool_input).kind is kind
    if first is not None and first.omitted:
        assert brief.ccr_key in ccr.marker_keys(first.text)  # dropped content is always marked


@SETTINGS
@given(any_json, briefs, st.sampled_from([None, 1, 2]))
def test_json_compressor_never_raises_and_is_deterministic(value, brief, indent):
    text = _json_text(value, indent)
    first = json_compressor.compress(text, brief)
    assert _same(first, json_compressor.compress(text, brief))
    assert _same(first, json_compressor.compress(text, brief, loads(text)))  # pre-parsed: the same


@SETTINGS
@given(st.text(odd_chars, max_size=200))
def test_question_terms_never_raise_and_are_deterministic(question):
    assert extract_terms(question) == extract_terms(question)


# --- lossless means lossless --------------------------------------------------------------------


def _exact(value) -> str:
    """A value's JSON with key order and number spelling (RawNumber is its literal)."""
    return json.dumps(value, ensure_ascii=True)


@SETTINGS
@given(any_json)
def test_the_compact_json_notation_decodes_back_to_exactly_the_values(value):
    parsed = loads(json.dumps(value))  # floats become RawNumber, as the compressor sees them
    encoded = encode(parsed)
    assert encoded == encode(parsed)  # deterministic
    decoded = decode(encoded)
    assert decoded == parsed and _exact(decoded) == _exact(parsed)
    assert type(decoded) is type(parsed)


# Every JSON number spelling (JSON's grammar, so nothing is filtered away): signs, leading
# fraction zeros, trailing zeros, exponents in either case, with or without a sign.
_NUMBER = st.from_regex(r"-?(0|[1-9][0-9]{0,5})(\.[0-9]{1,4})?([eE][+-]?[0-9]{1,2})?", fullmatch=True)


@SETTINGS
@given(_NUMBER)
def test_number_spelling_survives_the_notation(literal):
    """Float literals are kept as written (``1.10``, ``1E5``, ``-0.0``); see json_format."""
    try:
        value = loads(f"[{literal},{literal},{{\"n\":{literal}}}]")
    except ValueError:
        assume(False)
    decoded = decode(encode(value))
    assert _exact(decoded) == _exact(value)
    if not isinstance(value[0], int):  # integers are values ("-0" is 0); floats keep their spelling
        assert str(decoded[0]) == literal


@SETTINGS
@given(any_json, st.sampled_from([None, 2]))
def test_lossless_json_compression_decodes_to_the_original_document(value, indent):
    assume(isinstance(value, (dict, list)))
    text = _json_text(value, indent)
    result = json_compressor.compress(text, Brief(limits=Limits(lossy_min_chars=10**9)))
    if result is not None:
        assert result.omitted == 0
        assert _exact(decode(result.text)) == _exact(loads(text))


@SETTINGS
@given(free_text)
def test_stored_originals_and_memo_entries_round_trip(text):
    assert ccr.decode_original(ccr.encode_original(text)) == text
    assert ccr.decode_original(ccr.encode_original(text * 300)) == text * 300  # the zlib'd form
    entry = MemoEntry(text, 10, 5, ("json:table",), "0123456789abcdef")
    assert MemoEntry.from_bytes(entry.to_bytes()) == entry


# --- idempotence ----------------------------------------------------------------------------------


@SETTINGS
@given(any_text)
def test_normalisers_are_idempotent(text):
    once = text_compressor.normalise(text)
    assert text_compressor.normalise(once) == once
    cleaned = log_compressor.clean(text)
    assert log_compressor.clean(cleaned) == cleaned


@SETTINGS
@given(any_text, briefs)
def test_text_compression_of_its_own_output_changes_nothing(text, brief):
    first = text_compressor.compress(text, brief)
    if first is not None:
        assert text_compressor.compress(first.text, brief) is None


@SETTINGS
@given(any_json, briefs)
def test_minified_json_is_not_rewritten_again(value, brief):
    """Without tables the lossless form is plain compact JSON: compressing it again saves nothing."""
    assume(isinstance(value, (dict, list)))
    lossless = Brief(brief.terms, brief.ccr_key, Limits(lossy_min_chars=10**9))
    first = json_compressor.compress(_json_text(value, 2), lossless)
    if first is not None and first.transforms == ("json:minify",):
        assert json_compressor.compress(first.text, lossless) is None


@SETTINGS
@given(any_text)
def test_lossless_compression_of_its_own_output_changes_nothing(text):
    """Below the lossy threshold, each compressor's output is already in its final form.

    Excluded: text that already contains the log view's own ``… ×N`` notation. There the
    collapse could collapse again (``a`` ×3 then two literal ``a … ×3`` lines become three
    equal lines), which is why no compressor is ever run on an output (see below).
    """
    assume("\u2026 \u00d7" not in text)
    lossless = Brief(limits=Limits(lossy_min_chars=10**9, max_items=10**6))
    for name, compress in COMPRESSORS.items():
        first = compress(text, lossless)
        if first is not None:
            again = compress(first.text, lossless)
            assert again is None or again.text == first.text, name


# Not idempotent, by design (documented here, not asserted): a *lossy* result that is still
# longer than ``lossy_min_chars`` is trimmed again, with a new marker. Headroom never
# recompresses an output: the memo maps each original block, by content hash, to the one
# output it got on first sight, and later turns re-send exactly that.


# --- the pipeline over whole bodies ---------------------------------------------------------------


@st.composite
def bodies(draw):
    """Anthropic or OpenAI bodies with tool outputs of every kind and odd but legal parts."""
    provider = draw(st.sampled_from(["anthropic", "openai"]))
    question = draw(phrase | free_text)
    messages: list = [{"role": "user", "content": question}]
    for i in range(draw(st.integers(1, 4))):
        tool = draw(tool_names) or "Bash"
        output = draw(any_text)
        if draw(st.booleans()):
            output = output * draw(st.integers(2, 30))  # big enough to be worth compressing
        call = f"call_{i}"
        if provider == "anthropic":
            content = output if draw(st.booleans()) else [{"type": "text", "text": output}, {"type": "mystery"}]
            messages.append({"role": "assistant", "content": [
                {"type": "tool_use", "id": call, "name": tool, "input": draw(tool_inputs) or {}}]})
            messages.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call, "content": content}]})
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": call, "type": "function", "function": {"name": tool, "arguments": "{}"}}]})
            messages.append({"role": "tool", "tool_call_id": call, "content": output})
    messages.append({"role": "user", "content": question})
    return provider, {"model": "claude-sonnet-4-5" if provider == "anthropic" else "gpt-4o",
                      "max_tokens": 1000, "messages": messages}


OPTIONS = PipelineOptions(min_block_chars=200, lossy_min_chars=600, max_items=10, head_lines=3, tail_lines=3)


def _run(body: dict, provider: str, store: MemoryStore) -> tuple:
    return asyncio.run(run_pipeline(body, provider, store, "caller", OPTIONS))


@FEW
@given(bodies())
def test_the_pipeline_never_fails_and_is_deterministic(generated):
    provider, body = generated
    snapshot = json.dumps(body)
    assert needs_work(body, provider, OPTIONS) == needs_work(body, provider, OPTIONS)
    new, receipt = _run(body, provider, MemoryStore())
    assert receipt.errors == 0  # no transform raised
    assert json.dumps(body) == snapshot  # the input is never mutated
    again, _ = _run(body, provider, MemoryStore())  # a fresh store: decided afresh, the same bytes
    assert json.dumps(new) == json.dumps(again)
    if new is not None:
        # Only tool outputs change, and each one as its own block would.
        sent_blocks = find_blocks(new, provider)
        original = find_blocks(body, provider)
        assert [b.path for b in sent_blocks] == [b.path for b in original]
        restored = replace_blocks(new, provider, {b.path: b.text for b in original})
        assert json.dumps(restored) == snapshot


@FEW
@given(bodies(), phrase)
def test_a_later_turn_resends_the_same_bytes_whatever_the_new_question(generated, new_question):
    """Cache safety: a block is decided once; the next turn (another question) re-sends it."""
    provider, body = generated
    store = MemoryStore()
    first, _ = _run(body, provider, store)
    later = {**body, "messages": body["messages"] + [{"role": "assistant", "content": "ok"},
                                                      {"role": "user", "content": new_question}]}
    second, _ = _run(later, provider, store)
    first_blocks = {b.path: b.text for b in find_blocks(first or body, provider)}
    second_blocks = {b.path: b.text for b in find_blocks(second or later, provider)}
    for path, text in first_blocks.items():
        assert second_blocks[path] == text
    assert question_text(later) == new_question.strip() or not new_question.strip()


@SETTINGS
@given(st.lists(st.sampled_from(["user", "assistant", "system", "tool"]), max_size=14),
       st.integers(0, 5_000), st.integers(0, 3), st.integers(1, 500))
def test_fitting_never_splits_a_tool_pair_and_keeps_system_and_recent_turns(roles, budget, keep_last, step):
    messages = []
    for i, role in enumerate(roles):
        msg: dict = {"role": role, "content": f"m{i}"}
        if role == "assistant":
            msg["tool_calls"] = [{"id": f"c{i}"}]
        if role == "tool":
            msg["tool_call_id"] = f"c{i - 1}"
        messages.append(msg)
    counts = [100] * len(messages)
    result = fit.fit(messages, counts, sum(counts), budget, keep_last, step)
    assert result == fit.fit(messages, counts, sum(counts), budget, keep_last, step)
    if result is None:
        return
    kept = set(result.keep)
    for i, msg in enumerate(messages):
        if msg["role"] == "system":
            assert i in kept
        if msg["role"] == "tool" and i in kept and i > 0 and messages[i - 1]["role"] == "assistant":
            assert i - 1 in kept  # never a result without its call
