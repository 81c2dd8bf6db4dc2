"""Token counting with tiktoken's ``o200k_base`` BPE, loaded lazily once per process.

Why lazy: loading the rank table takes ~0.3 s, and the proxy must start fast, so nothing is
loaded at import time. The first count (or :func:`warm_up`, which the proxy may call in the
background at startup) loads it. Why a fallback: offline machines cannot download encodings;
then counts become a clearly labelled estimate (:func:`is_estimate` is True) and exactly one
warning is logged for the whole process.

o200k is OpenAI's tokenizer; for Claude models it is a close proxy, not the provider's count.
"""

from __future__ import annotations

import binascii
import logging
import threading

from headroom.state.lru import LRU, text_keyed

log = logging.getLogger("headroom.tokens")

ENCODING_NAME = "o200k_base"
LOAD_TIMEOUT_S = 10.0  # tiktoken downloads without a timeout; never let that hang a request

_lock = threading.Lock()
_encode = None  # bound ``encode_ordinary`` once loaded
_state = "unloaded"  # unloaded | exact | estimate


# o200k_base as tiktoken_ext.openai_public defines it (tiktoken 0.14); the file is pinned by
# its hash, so none of this can change under us. tests/transforms/test_tokens_terms.py checks
# each against tiktoken's own definition.
O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
O200K_SPECIAL = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}
O200K_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])


def parse_ranks(contents: bytes, chunk: int = 1 << 16) -> dict[bytes, int]:
    """A ``.tiktoken`` file (one ``base64-token rank`` pair a line) as tiktoken's rank table.

    Why not ``tiktoken.load.load_tiktoken_bpe``: it decodes line by line in Python, 0.26 s for
    o200k's 200,000 lines on a 2-core machine; ``split`` and ``map`` over 64 KiB at a time take
    0.10 s, the same table (a split of the whole file at once took 0.12 s and left the process
    ~1 MB larger). With ``--workers N`` the main process loads the tokenizer before it forks
    the workers, so this is time before ``/health`` answers (``load_tests/footprint.py``)."""
    ranks: dict[bytes, int] = {}
    start = 0
    while start < len(contents):
        end = contents.find(b"\n", start + chunk) + 1 or len(contents)  # whole lines only
        fields = contents[start:end].split()
        if len(fields) % 2:
            raise ValueError("a .tiktoken file has a token and a rank on each line")
        ranks.update(zip(map(binascii.a2b_base64, fields[0::2]), map(int, fields[1::2])))
        start = end
    return ranks


def load_encoding():
    """o200k_base, built from tiktoken's cached (or downloaded) file, checked by its hash.

    The Python copy of the rank table is emptied once the Rust tokenizer holds its own:
    tiktoken keeps it only for pickling, and it is ~30 MB of a worker's ~78 (measured with
    tiktoken 0.14; a worker's tokenizer then takes ~48 MB). Counting is unaffected."""
    import tiktoken
    from tiktoken.load import read_file_cached

    ranks = parse_ranks(read_file_cached(O200K_URL, O200K_SHA256))
    encoding = tiktoken.Encoding(ENCODING_NAME, pat_str=O200K_PATTERN, mergeable_ranks=ranks,
                                 special_tokens=O200K_SPECIAL)
    ranks.clear()  # the Encoding's own reference is to this dict
    _return_freed_memory()
    return encoding.encode_ordinary


def _return_freed_memory() -> None:
    """Hand the heap the rank table held back to the system (glibc keeps it otherwise)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the memory is reused by this process instead


def cache_dir() -> str:
    """Where tiktoken looks for its encodings (its own rule: TIKTOKEN_CACHE_DIR, then
    DATA_GYM_CACHE_DIR, then a folder in the system's temporary directory)."""
    import os
    import tempfile

    return (os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
            or os.path.join(tempfile.gettempdir(), "data-gym-cache"))


def remedy() -> str:
    """How to get the encodings onto a machine: the fix printed by the warning and ``headroom doctor``."""
    return (f"run once with internet access (python -c \"import tiktoken; tiktoken.get_encoding('{ENCODING_NAME}')\"), "
            f"or copy a machine's tiktoken cache files into a folder and export TIKTOKEN_CACHE_DIR=<that folder> "
            f"(now: {cache_dir()})")


def unavailable_line(timed_out: bool = False) -> str:
    """The one line said when the encoding cannot be loaded. Why not the exception: offline it
    is a multi-line connection error naming a download URL, which tells a user nothing about
    what it means for them (counts are estimates) or what to do."""
    why = f"did not load within {LOAD_TIMEOUT_S:.0f}s" if timed_out else "is not available (no network, no cached copy)"
    return f"tiktoken's {ENCODING_NAME} encoding {why}: token counts are estimates. Fix: {remedy()}"


def _ensure_loaded() -> None:
    """Load the encoding once; on failure or timeout switch to estimates and warn once."""
    global _encode, _state
    if _state != "unloaded":
        return
    with _lock:
        if _state != "unloaded":
            return
        result: dict = {}

        def target() -> None:
            try:
                result["encode"] = load_encoding()
            except BaseException as exc:  # noqa: BLE001 - any failure means "estimate"
                result["error"] = exc

        worker = threading.Thread(target=target, name="headroom-tiktoken-load", daemon=True)
        worker.start()
        worker.join(LOAD_TIMEOUT_S)
        if "encode" in result:
            _encode = result["encode"]
            _state = "exact"
        else:
            log.warning("%s", unavailable_line("error" not in result))
            _state = "estimate"


_warm_up_lock = threading.Lock()  # not _lock: that one is held for the whole load
_warm_up_thread: threading.Thread | None = None


def warm_up() -> threading.Thread:
    """Load the encoding in a background thread (call at proxy startup; returns the thread).

    A second call returns the same thread. ``/readyz`` reports the worker not ready until
    :func:`loaded`; a request that comes sooner is not held up by the load: its counts are
    estimates (:func:`count_tokens`)."""
    global _warm_up_thread
    with _warm_up_lock:
        if _warm_up_thread is None:
            _warm_up_thread = threading.Thread(target=_ensure_loaded, name="headroom-tokens-warmup", daemon=True)
            _warm_up_thread.start()
        return _warm_up_thread


def loaded() -> bool:
    """Whether the encoding is loaded, or known to be unavailable (estimates); never blocks."""
    return _state != "unloaded"


def _warming() -> bool:
    """A background load (:func:`warm_up`) is under way and has not finished."""
    thread = _warm_up_thread
    return _state == "unloaded" and thread is not None and thread.is_alive()


def is_estimate() -> bool:
    """True when counts are character-based estimates: the BPE could not be loaded, or it is
    still loading in the background (:func:`count_tokens` does not wait for it)."""
    if _warming():
        return True
    _ensure_loaded()
    return _state == "estimate"


def estimate_tokens(text: str) -> int:
    """Cheap estimate: about 4 characters per token for English text and code."""
    return (len(text) + 3) // 4


def count_tokens(text: str) -> int:
    """Number of o200k_base tokens in ``text`` (an estimate when the BPE is unavailable, or
    still loading in the background).

    Why not wait for a load under way: it takes ~0.3 s, and the requests that arrive in that
    window (the first one after ``/health`` answers, usually) would carry all of it. Their
    counts are estimates instead, and their receipts say so (:func:`is_estimate`). Counts
    only decide a block's fate at the margin (kept when compressing saves no tokens), and
    what a request sent is memoised, so later turns send the same bytes whatever they count.
    """
    return _count(text)[0]


def _count(text: str) -> tuple[int, bool]:
    """The count, and whether it is final (not an estimate made while the BPE loads)."""
    if not text:
        return 0, True
    if _state == "unloaded":
        if _warming():
            return estimate_tokens(text), False
        _ensure_loaded()
    if _encode is None:
        return estimate_tokens(text), True
    return len(_encode(text)), True


class CountCache:
    """String → token count. Why: every turn re-sends the system prompt, tools and history;
    counting them again would cost ~6 ms per 100 KB each turn, a lookup costs a string hash."""

    def __init__(self, max_chars: int = 16_000_000) -> None:
        self._counts: LRU[str, int] = text_keyed(max_chars)

    def __len__(self) -> int:
        return len(self._counts)

    def __contains__(self, text: str) -> bool:
        return text in self._counts

    @property
    def chars(self) -> int:
        return self._counts.weight

    def count(self, text: str) -> int:
        hit = self._counts.get(text)
        if hit is not None:
            return hit
        value, final = _count(text)
        if final:  # an estimate made while the BPE loads is not kept
            self._counts.put(text, value)
        return value

    def put(self, text: str, count: int) -> None:
        self._counts.put(text, count)

    def clear(self) -> None:
        self._counts.clear()


_shared_cache = CountCache()


def count_cached(text: str) -> int:
    """:func:`count_tokens` through the process-wide :class:`CountCache`."""
    return _shared_cache.count(text)


def _reset_for_tests() -> None:
    """Forget the loaded encoding so tests can exercise loading and the fallback."""
    global _encode, _state, _warm_up_thread
    with _lock:
        _encode = None
        _state = "unloaded"
    _warm_up_thread = None
    _shared_cache.clear()


def clear_cache() -> None:
    _shared_cache.clear()


def remember(text: str, count: int) -> None:
    """Seed the shared cache with a count known from elsewhere (the pipeline memo); not while
    the BPE loads, when that count may be one of this request's estimates."""
    if not _warming():
        _shared_cache.put(text, count)
