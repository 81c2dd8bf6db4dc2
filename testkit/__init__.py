"""Test support, in one place, for the tests and the load tests alike.

- :mod:`testkit.mock_upstream` — the project's only fake: a local Anthropic + OpenAI API.
- :mod:`testkit.services` — real processes on free loopback ports: the mock, ``headroom proxy``
  through the real CLI, and ``redis-server`` (through the product's own launcher).
- :mod:`testkit.ports` — free ports; :mod:`testkit.waiting` — polling instead of fixed sleeps.
- :mod:`testkit.corpus` — realistic agent tool outputs with the value each question asks for.
- :mod:`testkit.tiny_lingua` — a tiny LLMLingua-2-shaped model built locally in seconds.

Not part of the installed package: it lives beside ``headroom/`` in the repository.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
