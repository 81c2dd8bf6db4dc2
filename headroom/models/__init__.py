"""ML models behind the proxy's compression: LLMLingua-2 prompt compression.

``lingua2`` holds the algorithm (numpy only) with the forward pass separated so a model
server can batch windows of different requests; ``torch_backend`` and ``onnx_backend`` run
the token classifier; ``export`` writes ONNX (fp32 / int8) models; ``loader`` picks device
and backend. Nothing here imports torch or onnxruntime until a model is loaded; the ML
packages come with the ``llmlingua`` extra.
"""
