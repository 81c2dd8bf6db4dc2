"""The wire formats Headroom speaks, and how a request finds its own.

Adding a format is one module in this package, implementing
:class:`~headroom.formats.base.Format`, plus its line in :data:`FORMATS` (and its prices
in ``headroom/data/pricing.json``). Nothing outside a format's module compares a format's
name: the routes, the pipeline, usage, errors, guards, metrics and the banner all read
what they need from the :class:`Format` object a request carries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from headroom.formats.anthropic import ANTHROPIC
from headroom.formats.base import Block, Format, Path, Refusal, Route
from headroom.formats.chat import CHAT
from headroom.formats.gemini import GEMINI
from headroom.formats.responses import RESPONSES

#: Every format, in the order a request is matched against them (by path, then by headers).
FORMATS: tuple[Format, ...] = (ANTHROPIC, CHAT, RESPONSES, GEMINI)

#: Where a request that no format claims goes: OpenAI's Chat Completions, the de-facto generic API.
DEFAULT: Format = CHAT

#: Other names a format is known by: a provider's label stands for its main format (the
#: ``"provider"`` field of ``POST /v1/compress``, which predates the formats).
_ALIASES: dict[str, Format] = {"openai": CHAT}
_BY_NAME: dict[str, Format] = {**{f.name: f for f in FORMATS}, **_ALIASES}

#: The provider labels of stats, metrics and the request log, one per provider.
PROVIDERS: tuple[str, ...] = tuple(dict.fromkeys(f.provider for f in FORMATS))

#: Every header that carries a caller's API key in any format, in hashing order.
CREDENTIAL_HEADERS: tuple[str, ...] = tuple(dict.fromkeys(h for f in FORMATS for h in f.credential_headers))

#: The upstreams: (provider label, config field of its base URL), one per field.
UPSTREAMS: tuple[tuple[str, str], ...] = tuple(
    dict.fromkeys((f.provider, f.upstream_option) for f in FORMATS)
)


def named(name: str | Format) -> Format:
    """The format called ``name`` (or one of its aliases); a format is returned as is.
    Raises ``KeyError`` for an unknown name."""
    if not isinstance(name, str):
        return name
    return _BY_NAME[name]


def names() -> list[str]:
    """Every name :func:`named` accepts."""
    return list(_BY_NAME)


def format_for_path(path: str, headers: Mapping[str, str] | Iterable[str]) -> Format:
    """The format of a request: by route first, then by the headers the client sent, else
    :data:`DEFAULT`. (Anthropic clients always send ``x-api-key`` or ``anthropic-version``;
    OpenAI clients send ``authorization: Bearer``.)"""
    for fmt in FORMATS:
        if fmt.claims_path(path):
            return fmt
    for fmt in FORMATS:
        if fmt.claims_headers(headers):
            return fmt
    return DEFAULT


__all__ = [
    "ANTHROPIC", "CHAT", "CREDENTIAL_HEADERS", "DEFAULT", "FORMATS", "GEMINI", "PROVIDERS", "RESPONSES", "UPSTREAMS",
    "Block", "Format", "Path", "Refusal", "Route", "format_for_path", "named", "names",
]
