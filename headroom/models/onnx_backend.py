"""ONNX Runtime backend for a model written by :func:`headroom.models.export.export_onnx`.

onnxruntime is imported when a backend is made, never at module import.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class OnnxBackend:
    """One ``InferenceSession``; ``run`` is thread-safe, so no lock is needed."""

    def __init__(
        self,
        path: str | os.PathLike,
        device: str = "cpu",
        *,
        name: str | None = None,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.device = device
        self.name = name or ("onnx-int8" if ".int8." in self.path.name else "onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        available = ort.get_available_providers()
        if device == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise RuntimeError("device 'cuda' needs onnxruntime-gpu (CUDAExecutionProvider)")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        elif device == "cpu":
            providers = ["CPUExecutionProvider"]
        else:
            raise ValueError(f"the ONNX backend runs on cpu or cuda, not {device!r}")
        self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        self._inputs = {i.name for i in self.session.get_inputs()}

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feed = {
            "input_ids": np.ascontiguousarray(input_ids, dtype=np.int64),
            "attention_mask": np.ascontiguousarray(attention_mask, dtype=np.int64),
        }
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        (logits,) = self.session.run(["logits"], feed)
        return np.asarray(logits, dtype=np.float32)
