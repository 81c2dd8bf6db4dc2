"""Stored originals for retrieval tests: a multi-line tool output that compression cuts,
stored through the real proxy's ``/v1/compress`` under a caller's API key."""

from __future__ import annotations

from testkit.llm_requests import ANTHROPIC_VERSION, HTTP, anthropic_body


def service_log(salt: str, lines: int = 400) -> str:
    """An application log: routine lines, a rare error with a unique order id every 97th."""
    rows = []
    for i in range(1, lines + 1):
        if i % 97 == 0:
            rows.append(f"2026-03-04T10:{i // 60:02d}:{i % 60:02d}Z ERROR worker-{i % 5} payment declined "
                        f"for order ord-{salt}-{i:05d}: card expired")
        else:
            rows.append(f"2026-03-04T10:{i // 60:02d}:{i % 60:02d}Z INFO worker-{i % 5} GET /api/orders/{i} "
                        f"200 {10 + i % 13}ms")
    return "\n".join(rows) + "\n"


def anthropic_headers(api_key: str) -> dict[str, str]:
    return {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION}


def store_original(proxy_url: str, api_key: str, tool_output: str, admin_token: str | None = None) -> str:
    """Compress a request carrying ``tool_output`` as ``api_key``; the retrieval key of its original."""
    admin = {"x-headroom-admin-token": admin_token} if admin_token else {}
    response = HTTP.post(f"{proxy_url}/v1/compress", headers={**anthropic_headers(api_key), **admin},
                         json=anthropic_body("how many requests were served?", tool_output=tool_output))
    assert response.status_code == 200, response.text
    keys = response.json()["receipt"]["retrieval_keys"]
    assert len(keys) == 1, f"expected the log to be cut and stored once, got {keys}"
    return keys[0]
