"""Export the LLMLingua-2 token classifier to ONNX (optionally int8) for the ORT backend.

``export_onnx(model, out_dir)`` writes into ``out_dir``::

    model.onnx            fp32, inputs input_ids / attention_mask (int64, dynamic batch and
                          sequence axes, sequence <= 512), output logits (float32, n x L x 2)
    model.int8.onnx       with int8=True: dynamic int8 quantisation of model.onnx
    tokenizer files       tokenizer.json, tokenizer_config.json, ... (save_pretrained)
    config.json           the model config
    headroom-lingua.json  the marker the loader looks for (see MARKER)

With ``optimize`` (default) model.onnx is fused by onnxruntime's transformer optimizer and
uses ORT contrib ops (SkipLayerNormalization, BiasGelu): it runs in onnxruntime only.

Needs torch, transformers, onnx, onnxscript (torch's exporter) and, for int8,
onnxruntime. torch's legacy TorchScript exporter (``dynamo=False``) is not used: with
transformers 5 its trace bakes the example's sequence length into the attention mask and
gives wrong logits for any other length.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import cast

MARKER = "headroom-lingua.json"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
FORMAT_VERSION = 1
OPSET = 18


def export_onnx(
    model: str,
    out_dir: str | os.PathLike,
    int8: bool = False,
    *,
    optimize: bool = True,
    max_window_tokens: int = 512,
) -> Path:
    """Export ``model`` (hub name or folder) into ``out_dir``; returns the default .onnx
    (the int8 one when ``int8`` is set).

    ``optimize`` runs onnxruntime's transformer optimizer (SkipLayerNormalization and
    BiasGelu fusions, ORT contrib ops) before quantising: on 2 CPU cores it made a
    bert-base-sized int8 model ~20-40 % faster. It falls back to the plain graph if the
    optimizer fails; the marker records which.
    """
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from headroom.models.lingua2 import detect_word_scheme

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(model)
    net = AutoModelForTokenClassification.from_pretrained(model, attn_implementation="eager").eval()
    net = net.float()

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("sequence", min=1, max=max_window_tokens)
    sep = cast(int, tokenizer.convert_tokens_to_ids("[SEP]"))  # one token in, one id out
    example_ids = torch.full((2, 16), sep, dtype=torch.long)
    example_mask = torch.ones_like(example_ids)
    fp32_path = out / FP32_FILE
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter (axis renames, deprecations)
        torch.onnx.export(
            LogitsOnly(net).eval(),
            (example_ids, example_mask),
            str(fp32_path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,  # bert-base is ~0.7 GB, under protobuf's 2 GB limit
        )
    optimized = optimize and _optimize(fp32_path, net.config)
    tokenizer.save_pretrained(str(out))
    net.config.save_pretrained(str(out))

    int8_path = None
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        int8_path = out / INT8_FILE
        quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)

    marker = {
        "format": FORMAT_VERSION,
        "source": str(model),
        "fp32": FP32_FILE,
        "int8": INT8_FILE if int8_path else None,
        "default": "int8" if int8_path else "fp32",
        "word_scheme": detect_word_scheme(tokenizer),  # the folder's own name may not tell
        "max_window_tokens": max_window_tokens,
        "opset": OPSET,
        "optimized": optimized,
    }
    (out / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return int8_path or fp32_path


def _optimize(path: Path, config) -> bool:
    """Fuse in place with onnxruntime.transformers; False (graph untouched) on failure."""
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimized = optimize_model(
                str(path),
                model_type="bert",
                num_heads=int(config.num_attention_heads),
                hidden_size=int(config.hidden_size),
                opt_level=0,  # fusions only: no hardware-specific ORT rewrites baked in
            )
            tmp = path.with_suffix(".opt.tmp")
            optimized.save_model_to_file(str(tmp))
        tmp.replace(path)
        return True
    except Exception:
        logging.getLogger(__name__).warning("onnxruntime optimizer failed; keeping the plain graph", exc_info=True)
        return False


def read_marker(folder: str | os.PathLike) -> dict | None:
    """The export marker of ``folder``, or None when it holds no exported model."""
    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or not (Path(folder) / str(marker.get("fp32") or FP32_FILE)).is_file():
        return None
    return marker
