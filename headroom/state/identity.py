"""Caller identity: a keyed hash of the caller's credential, never the credential itself.

Every piece of per-caller state (cache partition, buckets, budgets, CCR originals, the
compression memo, log lines) is keyed by ``caller_hash(secret, credential_of(headers))``.
The secret is per deployment and must be the same in every worker and instance sharing a
store, or they would not recognise the same caller: take it from configuration, or from
:meth:`headroom.state.store.Store.shared_secret`.

**What the credential is** (:func:`credential_of`). A caller is whoever the upstream
authenticates, so the credential is the exact bytes the upstream authenticates:

- the values of ``x-api-key`` (Anthropic API keys), ``Authorization`` (OpenAI keys;
  Anthropic OAuth tokens as ``Authorization: Bearer``) and ``api-key`` (Azure OpenAI), as
  received and forwarded;
- less the spaces and tabs around a field value, which HTTP says are not part of it
  (RFC 9110 §5.5): every HTTP parser, the upstream's included, drops them, so
  ``x-api-key: K`` and ``x-api-key:  K\\t`` reach the upstream as the same key ``K`` and are
  the same caller here. Nothing else is trimmed or rewritten;
- ``Authorization: Bearer T`` counts as the token ``T`` (the scheme name is
  case-insensitive, RFC 9110 §11.1), so the key ``K`` is one caller whether it comes as
  ``x-api-key: K`` or ``Authorization: Bearer K``. Any other scheme counts as its whole value;
- **no case-folding and no Unicode normalisation**: keys that differ in case, in inner
  whitespace, or in any byte are different callers. UTF-8 beyond ASCII is hashed as
  received. Bytes that are not UTF-8 are refused (:class:`MalformedCredential`, a 400):
  no provider issues such a key, and a client library that re-encodes header values (aiohttp,
  Headroom's upstream client before issue 23, sent ``sk-\\xff-K`` on as ``sk--K``) would split
  one caller into many: a credential hashed differently from what the upstream authenticates;
- a request carrying several different credentials (``x-api-key`` *and* a different
  ``Bearer`` token, or one header twice) is hashed over all of them, tagged and
  length-prefixed: whichever of them the upstream honours, only a caller holding every one
  of them shares that identity. Identical values count once.

A request with none of these headers is *anonymous* (empty credential): Headroom cannot
tell such callers apart (they may authenticate upstream by other means), so the routes
never serve them from, or store them in, the response cache.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence

#: Hex characters kept: 32 = 128 bits, ample against collisions between callers.
HASH_HEX_CHARS = 32

#: The default credential headers, in hashing order (Anthropic's and OpenAI's, incl. Azure's
#: ``api-key``); the proxy passes :data:`headroom.formats.CREDENTIAL_HEADERS`, every format's.
CREDENTIAL_HEADERS = ("x-api-key", "authorization", "api-key")

_OWS = " \t"  # optional whitespace around an HTTP field value (RFC 9110 §5.6.3)


class MalformedCredential(ValueError):
    """A credential header holds bytes that are not UTF-8: it cannot be forwarded as received."""


def credential_of(headers, names: Sequence[str] = CREDENTIAL_HEADERS,
                  extra: Iterable[tuple[str, str]] = ()) -> bytes:
    """The caller's credential, as the exact bytes the upstream authenticates (see above).

    ``headers`` is a multidict of the request's headers (Sanic's ``Header``): repeated
    fields are all taken into account. ``names``: the credential headers, in hashing order
    (the proxy passes every format's, :data:`headroom.formats.CREDENTIAL_HEADERS`).
    ``extra``: credentials sent elsewhere than in a header, as (name, value), hashed after
    the headers (Gemini's ``?key=``). ``b""`` for an anonymous request. Raises
    :class:`MalformedCredential` when a credential is not valid UTF-8.
    """
    found: list[tuple[str, bytes]] = []
    given = [(name, value) for name in names for value in headers.getall(name, ())]
    for name, value in [*given, *extra]:
        value = value.strip(_OWS)
        if "\0" in value:  # no header holds one; a query value might, and would break the encoding below
            raise MalformedCredential(f"The {name} credential contains a NUL byte")
        if name == "authorization":
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                value = token.lstrip(" ")  # "Bearer" 1*SP token (RFC 6750 §2.1)
        try:
            raw = value.encode()  # Sanic decoded the header with surrogateescape
        except UnicodeEncodeError:
            raise MalformedCredential(f"The {name} header is not valid UTF-8") from None
        if raw and all(raw != seen for _, seen in found):
            found.append((name, raw))
    if not found:
        return b""
    if len(found) == 1:
        return found[0][1]
    # Several different credentials: an injective encoding of all of them. It starts with a
    # NUL, which no single header value can contain, so it never equals a lone credential.
    parts = [b"\0"]
    for name, raw in found:
        tagged = name.encode() + b"=" + raw
        parts.append(len(tagged).to_bytes(4, "big") + tagged)
    return b"".join(parts)


def caller_hash(secret: bytes, credential: bytes | str) -> str:
    """HMAC-SHA256 of the credential under the deployment secret, as 32 hex characters.

    ``credential`` is :func:`credential_of`'s bytes; a ``str`` is taken as a header value
    (UTF-8, with ``surrogateescape`` for bytes Sanic could not decode).
    """
    if not secret:
        raise ValueError("caller_hash needs a non-empty secret")
    if isinstance(credential, str):
        credential = credential.encode("utf-8", "surrogateescape")
    keyed = _KEYED.get(secret)
    if keyed is None:
        if len(_KEYED) >= _KEYED_LIMIT:
            _KEYED.clear()
        keyed = _KEYED[secret] = _keyed_sha256(secret)
    inner, outer = keyed[0].copy(), keyed[1].copy()
    inner.update(credential)
    outer.update(inner.digest())
    return outer.hexdigest()[:HASH_HEX_CHARS]


# HMAC (RFC 2104) from two SHA-256 states keyed once per secret and copied for every hash:
# ``hmac.new`` keyed them again each time (and looked the digest up in OpenSSL by name),
# which cost more than the hash itself. The same construction as the ``hmac`` module's.
_BLOCK = 64  # SHA-256's block size
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
_KEYED: dict[bytes, tuple[hashlib._Hash, hashlib._Hash]] = {}  # a process sees one secret, or a few in tests
_KEYED_LIMIT = 16


def _keyed_sha256(secret: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    key = hashlib.sha256(secret).digest() if len(secret) > _BLOCK else secret
    key = key.ljust(_BLOCK, b"\0")
    return hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD))


def new_secret() -> bytes:
    """A fresh random 32-byte deployment secret."""
    return secrets.token_bytes(32)


def secret_from_text(text: str) -> bytes:
    """A secret given as configuration text (e.g. ``HEADROOM_STATE_SECRET``): hex when it
    is valid hex of at least 16 bytes, its UTF-8 bytes otherwise."""
    text = text.strip()
    if not text:
        raise ValueError("empty secret")
    try:
        raw = bytes.fromhex(text)
        if len(raw) >= 16:
            return raw
    except ValueError:
        pass
    return text.encode()
