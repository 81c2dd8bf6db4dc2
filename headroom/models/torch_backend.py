"""PyTorch backend: the Hugging Face token classifier, run under ``torch.inference_mode``.

torch and transformers are imported when a backend is made, never at module import.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class TorchBackend:
    """Runs a ``*ForTokenClassification`` model; returns float32 logits as numpy."""

    name = "torch"

    def __init__(self, model: Any, device: str = "cpu", threads: int | None = None) -> None:
        import torch

        self._torch = torch
        if threads:
            torch.set_num_threads(threads)
        self.device = device
        self.model = model.to(device).eval()

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        device: str = "cpu",
        *,
        dtype: str = "float32",
        threads: int | None = None,
        **model_kwargs: Any,
    ) -> TorchBackend:
        """Load a hub name or a local folder (``AutoModelForTokenClassification``).

        ``dtype="float16"`` halves GPU time; the default float32 is what llmlingua uses on
        CPU and what the parity tests check.
        """
        import torch
        from transformers import AutoModelForTokenClassification

        torch_dtype = getattr(torch, dtype)
        key = "dtype" if _accepts_dtype() else "torch_dtype"
        net = AutoModelForTokenClassification.from_pretrained(model, **{key: torch_dtype}, **model_kwargs)
        return cls(net, device=device, threads=threads)

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        torch = self._torch
        ids = torch.from_numpy(np.ascontiguousarray(input_ids, dtype=np.int64)).to(self.device)
        mask = torch.from_numpy(np.ascontiguousarray(attention_mask, dtype=np.int64)).to(self.device)
        # No lock: an eval-mode forward under inference_mode changes no state, so the batcher's
        # two lanes (short and long windows) may run passes at the same time.
        with torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=mask).logits
        return logits.float().cpu().numpy()


def _accepts_dtype() -> bool:
    """transformers >= 4.56 takes ``dtype=``; older releases only ``torch_dtype=``."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return (major, minor) >= (4, 56)
