"""Checks that an error reached the client in its provider's native shape, with the right status."""

from __future__ import annotations

import json


def assert_anthropic_error(status: int, body: bytes, expected_status: int, kind: str = "invalid_request_error"):
    """Anthropic's ``{"type": "error", "error": {"type", "message"}}``; returns the message."""
    assert status == expected_status, body
    parsed = json.loads(body)
    assert parsed["type"] == "error", parsed
    assert parsed["error"]["type"] == kind, parsed
    assert parsed["error"]["message"]
    return parsed["error"]["message"]


def assert_openai_error(status: int, body: bytes, expected_status: int):
    """OpenAI's ``{"error": {"message", "type", "param", "code"}}``; returns the message."""
    assert status == expected_status, body
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["message"] and error["type"] == "invalid_request_error"
    return error["message"]
