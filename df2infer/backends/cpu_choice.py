"""Which backend runs an ONNX file on the CPU when the caller does not say (load(..., backend="auto")).

The rule comes from measurements (benchmarks/results/cpu_backends.md: ONNX Runtime and OpenVINO, FP32 and
INT8, batch 1 and 4, interleaved in one run, with the held-out accuracy of each) and is printed by
`df2infer info` and in the `df2infer bench` header. It is a rule about this project's files on x86 CPUs;
where OpenVINO is not installed, or on other CPUs (ARM: not measured), ONNX Runtime runs everything.
"""

from __future__ import annotations

import os
import platform

from df2infer.artifact import read_onnx_contract

# precision -> backend on x86 when OpenVINO is installed. Measured on an idle 2-core AMD EPYC (AVX2, no VNNI), two runs of
# benchmarks/cpu_backends.sh (benchmarks/results/cpu_backends.md, cpu_backends_run2.md), end-to-end p50 at batch 1 / 4:
# OpenVINO FP32 1.07x / 1.11x and 1.01x / 1.06x ONNX Runtime's FP32 (within the run-to-run spread); OpenVINO INT8
# 1.01x / 1.27x and 1.20x / 1.20x ONNX Runtime's INT8 of the same file, but its held-out AP differs from ONNX Runtime's
# by more than the 0.2 points asked of a second backend (box -0.24, mask -0.15, landmarks -0.2 / -0.1 with the current
# file; box -0.55 with its previous calibration;
# benchmarks/results/cpu_backends_accuracy.json). So ONNX Runtime runs every file unless OpenVINO is asked for.
X86_RULE = {"fp32": "onnxruntime", "fp16": "onnxruntime", "int8": "onnxruntime"}
RULE_TEXT = (
    "device='cpu', backend='auto': ONNX Runtime for every file; OpenVINO only when asked (backend='openvino'): FP32 no "
    "faster beyond run-to-run spread; INT8 1.0-1.3x faster, but its held-out box AP 0.24 points from ONNX Runtime's "
    "(benchmarks/results/cpu_backends.md, cpu_backends_accuracy.json)"
)


def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "i386", "x86")


def choose_cpu_backend(path: str | os.PathLike, *, precision: str | None = None, openvino: bool | None = None) -> str:
    """ "onnxruntime" or "openvino" for this ONNX file on this CPU, by RULE_TEXT. `precision` (else read from the
    file's contract) and `openvino` (else: whether it imports) may be given."""
    from df2infer.backends.openvino_backend import openvino_available

    if openvino is None:
        openvino = openvino_available()
    if not openvino:
        return "onnxruntime"
    if not _onnxruntime_available():
        return "openvino"
    if not is_x86():
        return "onnxruntime"
    if precision is None:
        precision = read_onnx_contract(path).precision
    return X86_RULE.get(precision, "onnxruntime")


def _onnxruntime_available() -> bool:
    from df2infer.backends.onnxruntime_backend import import_onnxruntime

    try:
        import_onnxruntime()
    except ImportError:
        return False
    return True
