"""Everything a Redis holds, read back for tests that scan stored data (for secrets, say)."""

from __future__ import annotations


def redis_dump(url: str) -> dict[bytes, object]:
    """Every key of a Redis and its value, read by type (strings, hashes, sorted sets with
    scores, lists, sets, streams), plus the ``DUMP`` serialisation of each key."""
    from redis import Redis

    client = Redis.from_url(url)
    out: dict[bytes, object] = {}
    try:
        for key in client.keys("*"):
            kind = client.type(key).decode()
            if kind == "string":
                value: object = client.get(key)
            elif kind == "hash":
                value = client.hgetall(key)
            elif kind == "zset":
                value = client.zrange(key, 0, -1, withscores=True)
            elif kind == "list":
                value = client.lrange(key, 0, -1)
            elif kind == "set":
                value = client.smembers(key)
            elif kind == "stream":
                value = client.xrange(key)
            else:
                value = kind
            out[key] = (value, client.dump(key))
    finally:
        client.close()
    return out
