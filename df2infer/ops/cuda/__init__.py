"""CUDA kernels for preprocessing, mask pasting and landmark decoding, beside their numpy references.

`.cu` sources compiled at first use by NVRTC (compiler.py), launched with the CUDA driver API
(launch.py), and runnable on the CPU through a host shim (shim/) so that every CI run checks them
against the numpy references without a GPU. See docs/cuda_kernels.md.
"""
