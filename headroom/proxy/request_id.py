"""Request ids: every response carries one, and the log and metrics use the same."""

from __future__ import annotations

import itertools
import os
import re

from sanic import Request

_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_REQUEST_IDS = itertools.count(1)
_PROCESS_TAG = ("", 0)  # (random tag, pid it was made in)


def request_id_for(request: Request) -> str:
    """The client's own ``x-request-id`` when it is a plain token, else a new one."""
    given = request.headers.get("x-request-id")
    if given and _CLIENT_REQUEST_ID.fullmatch(given):
        return given
    return new_request_id()


def new_request_id() -> str:
    """Unique across workers and restarts (a random tag per process), and cheap on the hot path."""
    global _PROCESS_TAG
    if _PROCESS_TAG[1] != os.getpid():  # first call in this process, forked or spawned
        _PROCESS_TAG = (os.urandom(6).hex(), os.getpid())
    return f"hr_{_PROCESS_TAG[0]}{next(_REQUEST_IDS):010x}"
