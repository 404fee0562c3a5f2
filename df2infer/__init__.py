"""df2infer: an edge inference runtime for Match R-CNN (DeepFashion2 clothing detection,
segmentation, landmarks and retrieval embeddings). ONNX Runtime on any CPU; TensorRT on NVIDIA GPUs.

    import df2infer
    model = df2infer.load()              # or df2infer.load("model.onnx", device="cpu")
    results = model.predict("photo.jpg")

Names are imported lazily, so `import df2infer` (and the CLI) stays cheap.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "load": "df2infer.api",
    "Predictor": "df2infer.api",
    "StageTimings": "df2infer.api",
    "DEFAULT_MODEL": "df2infer.api",
    "Detections": "df2infer.results",
    "Predictions": "df2infer.results",
    "PredictionFailure": "df2infer.results",
    "Contract": "df2infer.contract",
    "ContractError": "df2infer.contract",
    "ImageError": "df2infer.images",
    "letterbox": "df2infer.ops.letterbox",
    "annotate": "df2infer.sinks.annotate",
    "Gallery": "df2infer.retrieval.gallery",
    "Similarity": "df2infer.retrieval.similarity",
    "match_probability": "df2infer.retrieval.similarity",
    "RankingPolicy": "df2infer.retrieval.policy",
    "DeviceError": "df2infer.backends.base",
    "ModelLoadError": "df2infer.artifact",
    "SourceError": "df2infer.stream.sources",
    "Df2inferError": "df2infer.errors",
    "InputError": "df2infer.errors",
    "ModelError": "df2infer.errors",
    "OptionError": "df2infer.errors",
    "MissingPartError": "df2infer.errors",
    "DecodeOptions": "df2infer.ops.options",
    "FrameInfo": "df2infer.results",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'df2infer' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
