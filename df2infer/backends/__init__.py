"""Inference backends: one small surface (`contract`, `run`, `max_batch`, `name`, `device`).

`onnxruntime_backend.OnnxRuntimeBackend` runs an ONNX file (CPU, or CUDA/TensorRT execution
providers with onnxruntime-gpu); `tensorrt_backend.TensorRTBackend` runs a TensorRT engine.
Both are imported lazily by df2infer.api.load so that neither library is needed unless used.
"""

from df2infer.backends.base import Backend, DeviceError, ModelLoadError

__all__ = ["Backend", "DeviceError", "ModelLoadError"]
