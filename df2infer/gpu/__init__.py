"""GPU helpers shared by the TensorRT backend, the engine builder and the CUDA kernels.

Nothing here imports cuda-python or TensorRT at import time: the CPU path never needs them.
"""
