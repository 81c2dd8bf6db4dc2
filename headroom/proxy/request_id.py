"""Request ids: every response carries one, and the log and metrics use the same."""

from __future__ import annotations

import itertools
import os
import re

from sanic import Request

_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_REQUEST_IDS = itertools.count(1)
_process_tag = ""  # random, one per process: made on first use, forgotten in a forked child


def _forget_tag() -> None:
    global _process_tag
    _process_tag = ""


os.register_at_fork(after_in_child=_forget_tag)  # a fork never repeats its parent's ids


def request_id_for(request: Request) -> str:
    """The client's own ``x-request-id`` when it is a plain token, else a new one."""
    given = request.headers.get("x-request-id")
    if given and _CLIENT_REQUEST_ID.fullmatch(given):
        return given
    return new_request_id()


def new_request_id() -> str:
    """Unique across workers and restarts (a random tag per process), and cheap on the hot
    path: no system call (the tag is reset by a fork hook, not by comparing process ids)."""
    global _process_tag
    if not _process_tag:  # first call in this process, spawned or forked
        _process_tag = os.urandom(6).hex()
    return f"hr_{_process_tag}{next(_REQUEST_IDS):010x}"
