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

# precision -> backend on x86 when OpenVINO is installed. Measured (benchmarks/results/cpu_backends.md, one interleaved
# run, 2-core AMD EPYC, AVX2, no VNNI, other jobs on the machine): OpenVINO 2026.4 was slower than ONNX Runtime
# for both files, FP32 0.72x / 0.82x and INT8 0.69x / 0.94x of ONNX Runtime's speed on the same file at batch 1 / 4,
# with the same held-out accuracy; so it is never picked by itself: backend="openvino" asks for it.
X86_RULE = {"fp32": "onnxruntime", "fp16": "onnxruntime", "int8": "onnxruntime"}
RULE_TEXT = (
    "device='cpu', backend='auto': ONNX Runtime for every file; OpenVINO only when asked (backend='openvino'): slower than "
    "ONNX Runtime for FP32 and INT8 at batch 1 and 4 in the measured run (benchmarks/results/cpu_backends.md)"
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
