"""Recording fakes for the CUDA argument-conversion check (tests/test_cuda_bindings_calls.py), and write_fake_engine.

The GPU code's behaviour is tested on the strict stand-ins (tests/strict_gpu.py). These fakes serve one other
purpose: running every CUDA runtime call of the GPU code through the *real* cuda-python bindings (both majors),
whose argument conversion they check; neither builds nor runs anything:

- `fake_tensorrt(log, ...)` is a module with just the TensorRT 10 API surface our code touches (Logger,
  Runtime, init_libnvinfer_plugins, engines/contexts with name-based tensors, Builder/OnnxParser/config).
  Every call is appended to `log` as `("trt.<name>", args...)`.
- `CheckedCudart(log)` forwards every attribute to the installed `cuda.bindings.runtime`, so each call runs
  cuda-python's own argument conversion (a wrong argument type raises TypeError there, as it would on a GPU).
  Without a driver the calls return cudaErrorInsufficientDriver (or similar); the proxy records the real
  status and hands our code a success with a placeholder value of the right type (a stream handle, a device
  address, pinned host memory from ctypes), so the rest of the path runs. With a driver the real values are
  used. Every call is appended to `log` as `("cuda.<name>", args...)`.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import types
from pathlib import Path
from typing import Any

import numpy as np

from df2infer import artifact
from df2infer.contract import INPUT_NAME, OUTPUT_NAMES, Contract

_OUTPUT_DTYPES = {"num_dets": "INT32", "labels": "INT32"}


# ------------------------------------------------------------------------------------------------ cuda-python
class CheckedCudart:
    """See the module doc. `failures` lists (call, status name) of real calls that did not succeed."""

    _addresses = itertools.count(0x7A0000000000, 0x100000)

    def __init__(self, log: list, runtime: Any = None) -> None:
        if runtime is None:
            from cuda.bindings import runtime
        self._rt = runtime
        self._log = log
        self._pinned: list[Any] = []  # ctypes buffers standing in for cudaMallocHost without a driver
        self.failures: list[tuple[str, str]] = []
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._rt, name)
        if not (name.startswith("cuda") and callable(attr) and not isinstance(attr, type)):
            return attr  # enums, types and constants pass through

        def call(*args: Any) -> Any:
            self._log.append((f"cuda.{name}", *args))
            self.calls.append(name)
            result = attr(*args)  # cuda-python converts (and type-checks) the arguments here
            if name in ("cudaGetErrorName", "cudaGetErrorString"):
                return result
            status, values = (result[0], list(result[1:])) if isinstance(result, tuple) else (result, [])
            if int(status) == 0:
                return result
            self.failures.append((name, getattr(status, "name", str(status))))
            return (self._rt.cudaError_t.cudaSuccess, *self._placeholders(name, args, values))

        return call

    def _placeholders(self, name: str, args: tuple, values: list) -> list:
        rt = self._rt
        if name == "cudaMallocHost":
            buf = (ctypes.c_uint8 * max(int(args[0]), 1))()
            self._pinned.append(buf)
            return [ctypes.addressof(buf)]
        fill = {
            "cudaMalloc": lambda: next(self._addresses),
            "cudaStreamCreateWithFlags": lambda: rt.cudaStream_t(next(self._addresses)),
            "cudaStreamCreate": lambda: rt.cudaStream_t(next(self._addresses)),
            "cudaEventCreateWithFlags": lambda: rt.cudaEvent_t(next(self._addresses)),
            "cudaEventCreate": lambda: rt.cudaEvent_t(next(self._addresses)),
            "cudaGetDeviceProperties": lambda: rt.cudaDeviceProp(),
            "cudaStreamEndCapture": lambda: rt.cudaGraph_t(),
            "cudaGraphInstantiate": lambda: rt.cudaGraphExec_t(),
            "cudaGetDeviceCount": lambda: 1,
            "cudaDriverGetVersion": lambda: 0,
        }
        if name in fill:
            return [fill[name]()]
        return values


# ------------------------------------------------------------------------------------------------ tensorrt
def fake_tensorrt(
    log: list,
    *,
    version: str = "10.3.0.30",
    contract: Contract | None = None,
    max_batch: int = 4,
    plugins_ok: bool = True,
    onnx_input_shape: tuple | None = None,
    execute: Any = None,
) -> types.ModuleType:
    """A stand-in `tensorrt` module recording every call into `log` (see the module doc).

    Engines it "deserializes" have the contract's tensors with an optimization profile of batch 1..max_batch.
    `onnx_input_shape`: the input shape the fake ONNX parser reports (default [-1, 3, H, W]).
    `execute(addresses, batch)`: called by execute_async_v3 with {tensor name: address set by set_tensor_address}
    and the input batch, for tests whose "device" memory is host memory (it can read the input, write outputs).
    """
    contract = contract or Contract(input_height=64, input_width=96, max_detections=10)
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    def rec(name: str, *args: Any) -> None:
        log.append((f"trt.{name}", *args))

    class Logger:
        WARNING, VERBOSE, INFO, ERROR = 2, 4, 3, 1

        def __init__(self, severity: int = 2) -> None:
            self.severity = severity

    class TensorIOMode:
        INPUT, OUTPUT = "INPUT", "OUTPUT"

    class DataType:
        FLOAT, HALF, INT32, INT8 = "FLOAT", "HALF", "INT32", "INT8"

    def nptype(dt: str) -> type:
        return {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT8": np.int8}[dt]

    def init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:
        rec("init_libnvinfer_plugins", namespace)
        return plugins_ok

    class Context:
        def __init__(self) -> None:
            self.batch = max_batch
            self.addresses: dict[str, int] = {}

        def set_input_shape(self, name: str, shape: tuple) -> bool:
            rec("set_input_shape", name, tuple(shape))
            self.batch = int(shape[0])
            return 1 <= self.batch <= max_batch

        def get_tensor_shape(self, name: str) -> tuple:
            if name == INPUT_NAME:
                return (self.batch, 3, contract.input_height, contract.input_width)
            return tuple(contract.output_shapes(self.batch)[name])

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            rec("set_tensor_address", name, int(ptr))
            self.addresses[name] = int(ptr)
            return True

        def execute_async_v3(self, stream: int) -> bool:
            rec("execute_async_v3", int(stream))
            if execute is not None:
                execute(dict(self.addresses), self.batch)
            return True

    class Engine:
        names = [INPUT_NAME, *OUTPUT_NAMES]
        num_io_tensors = len(names)

        def get_tensor_name(self, i: int) -> str:
            return self.names[i]

        def get_tensor_mode(self, name: str) -> str:
            return TensorIOMode.INPUT if name == INPUT_NAME else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> str:
            return getattr(DataType, _OUTPUT_DTYPES.get(name, "FLOAT"))

        def get_tensor_profile_shape(self, name: str, profile: int) -> tuple:
            chw = (3, contract.input_height, contract.input_width)
            return ((1, *chw), (1, *chw), (max_batch, *chw))

        def create_execution_context(self) -> Context:
            rec("create_execution_context")
            return Context()

    class Runtime:
        def __init__(self, logger: Any) -> None:
            rec("Runtime")
            self._host_code = False

        @property
        def engine_host_code_allowed(self) -> bool:
            return self._host_code

        @engine_host_code_allowed.setter
        def engine_host_code_allowed(self, value: bool) -> None:
            rec("Runtime.engine_host_code_allowed", bool(value))
            self._host_code = bool(value)

        def deserialize_cuda_engine(self, data: bytes) -> Engine:
            rec("deserialize_cuda_engine", len(data))
            return Engine()

    # ---- builder side
    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            rec("IInt8EntropyCalibrator2")

    class _Flags:
        def __init__(self, names: tuple[str, ...]) -> None:
            for i, n in enumerate(names):
                setattr(self, n, i)

    BuilderFlag = _Flags(("FP16", "INT8", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "TF32"))
    NetworkDefinitionCreationFlag = _Flags(("STRONGLY_TYPED",))

    class MemoryPoolType:
        WORKSPACE = "WORKSPACE"

    def Dims(values: list) -> tuple:  # noqa: N802 - TensorRT's name
        return tuple(values)

    class Tensor:
        def __init__(self, name: str, shape: tuple, is_input: bool) -> None:
            self.name, self.shape, self.is_network_input, self.dtype = name, shape, is_input, DataType.FLOAT

    class Network:
        def __init__(self) -> None:
            shape = onnx_input_shape or (-1, 3, contract.input_height, contract.input_width)
            self._inputs = [Tensor(INPUT_NAME, tuple(shape), True)]
            self._outputs = [Tensor(n, (), False) for n in OUTPUT_NAMES]
            self.num_inputs, self.num_outputs = 1, len(self._outputs)

        def get_input(self, i: int) -> Tensor:
            return self._inputs[i]

        def get_output(self, i: int) -> Tensor:
            return self._outputs[i]

    class OnnxParser:
        num_errors = 0

        def __init__(self, network: Network, logger: Any) -> None:
            rec("OnnxParser")

        def parse_from_file(self, path: str) -> bool:
            rec("parse_from_file", path)
            return True

    class Profile:
        def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
            rec("profile.set_shape", name, lo, opt, hi)

    class TimingCache:
        def serialize(self) -> bytes:
            return b"timing"

    class Config:
        def __init__(self) -> None:
            self.flags: set[int] = set()

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            rec("config.set_memory_pool_limit", pool, size)

        def set_flag(self, flag: int) -> None:
            rec("config.set_flag", flag)
            self.flags.add(flag)

        def get_flag(self, flag: int) -> bool:
            return flag in self.flags

        def add_optimization_profile(self, profile: Profile) -> int:
            return 0

        def create_timing_cache(self, data: bytes) -> TimingCache:
            return TimingCache()

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            return True

        def get_timing_cache(self) -> TimingCache:
            return TimingCache()

    class Builder:
        def __init__(self, logger: Any) -> None:
            rec("Builder")

        def create_builder_config(self) -> Config:
            return Config()

        def create_network(self, flags: int) -> Network:
            rec("create_network", flags)
            return Network()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            rec("build_serialized_network")
            return b"fake serialized engine"

    for name, value in dict(locals()).items():
        if name not in ("log", "version", "contract", "max_batch", "plugins_ok", "onnx_input_shape", "execute", "trt", "rec"):
            setattr(trt, name, value)
    return trt


def names(log: list, prefix: str = "") -> list[str]:
    """The call names in `log` (optionally only those starting with `prefix`), in order."""
    return [entry[0] for entry in log if entry[0].startswith(prefix)]


def write_fake_engine(tmp_path: Path, contract: Contract, payload: bytes = b"serialized engine bytes", **meta) -> Path:
    """An engine file (its bytes are only handed to the fake runtime) with the sidecar the builder would write
    for an FP32 engine built on an Orin with TensorRT 10.3.0.30; `meta` overrides or adds sidecar fields."""
    engine = tmp_path / "model.engine"
    engine.write_bytes(payload)
    side = {
        "contract": json.loads(contract.to_json()),
        "tensorrt_version": "10.3.0.30",
        "gpu_name": "Orin",
        "compute_capability": "8.7",
        "precision": "fp32",
        "onnx_sha256": "0" * 64,
    }
    side.update(meta)
    artifact.engine_sidecar_path(engine).write_text(json.dumps(side))
    return engine
