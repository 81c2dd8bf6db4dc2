"""Gate for the tests that need LLMLingua's libraries (torch, transformers, onnxruntime).

Without them those tests skip with the reason; with ``HEADROOM_REQUIRE_LLMLINGUA=1`` (CI)
a missing or broken one fails the run instead.
"""

from __future__ import annotations

import importlib
import os

import pytest

REQUIRE_ENV = "HEADROOM_REQUIRE_LLMLINGUA"
PACKAGES = ("torch", "transformers", "tokenizers", "onnxruntime")


def require_llmlingua(*modules: str) -> None:
    for name in modules or PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            message = f"{name} is not installed or fails to import ({exc}): pip install -e '.[llmlingua]'"
            if os.environ.get(REQUIRE_ENV) == "1":
                pytest.fail(f"{message}; {REQUIRE_ENV}=1", pytrace=False)
            pytest.skip(message)
