"""df2infer: an edge inference runtime for Match R-CNN (DeepFashion2 clothing detection,
segmentation, landmarks and retrieval embeddings). ONNX Runtime on any CPU; TensorRT on NVIDIA GPUs.
"""
__version__ = "0.1.0"
