"""Fixtures for the LLMLingua-2 tests: the loaded compressors, over the tiny local model and
its ONNX export (``lingua_model``, ``lingua_export`` in tests/conftest.py). torch & co. are
imported inside the fixtures only, so a missing package skips the modules that need it
(testkit.lingua.require_llmlingua)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def plain_model_dir(lingua_model, tmp_path_factory) -> Path:
    """The same model in a folder with no export next to it."""
    dest = tmp_path_factory.mktemp("plain") / lingua_model.name
    shutil.copytree(lingua_model, dest)
    return dest


@pytest.fixture(scope="session")
def lingua_torch(lingua_model):
    from headroom.models.loader import load_lingua

    return load_lingua(str(lingua_model), device="cpu", backend="torch")


@pytest.fixture(scope="session")
def prompt_compressor(lingua_model):
    """llmlingua itself on the tiny model: the reference for parity."""
    from llmlingua import PromptCompressor

    return PromptCompressor(model_name=str(lingua_model), use_llmlingua2=True, device_map="cpu")
