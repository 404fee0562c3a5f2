"""cuda-python in one place: importing it, checking its return codes, asking a device what it is.

cuda-python returns every call's status as the first element of a tuple instead of raising.
`cuda_call` turns a failed status into a `CudaError` that names the call and CUDA's own error string
(cudaGetErrorName / cudaGetErrorString), so a failure reads like
``cudaMallocHost(67108864) failed: cudaErrorMemoryAllocation (out of memory)``.
"""

from __future__ import annotations

from typing import Any

from df2infer.errors import ModelError

INSTALL_HINT = (
    "install cuda-python (`pip install cuda-python`, which provides cuda.bindings; on a Jetson `pip install "
    "'df2infer[jetson]'`, the release matching JetPack 6's CUDA 12.6) and make sure an NVIDIA driver and GPU are present"
)
# What the `jetson` extra pins (pyproject.toml): cuda-bindings' runtime module statically links the CUDA runtime of
# its own version, and a Jetson's driver runs no newer runtime than its own CUDA (no minor-version compatibility
# there without NVIDIA's cuda-compat package). JetPack 6.1/6.2 ship CUDA 12.6; cuda-bindings itself starts at 12.8,
# so the pin is the cuda-python 12.6 release, which already has the cuda.bindings modules.
JETSON_CUDA_BINDINGS = "cuda-python>=12.6.2,<12.7"


class CudaError(ModelError, RuntimeError):
    """A CUDA call failed, or cuda-python is missing: the model cannot run on this device."""


def import_cudart() -> Any:
    """The CUDA runtime bindings: `cuda.bindings.runtime` (cuda-python >= 12.6), else the older `cuda.cudart`."""
    try:
        from cuda.bindings import runtime

        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart  # cuda-python < 12.6 (deprecated name, removed in 13)

        return cudart
    except ImportError:
        raise CudaError(f"cuda-python is not installed: {INSTALL_HINT}") from None


def error_text(cudart: Any, err: Any) -> str:
    """'cudaErrorName (description)' for a cudaError_t, falling back to repr if CUDA cannot say."""
    try:
        name = cudart.cudaGetErrorName(err)[1]
        desc = cudart.cudaGetErrorString(err)[1]
    except Exception:  # noqa: BLE001 - diagnostics must never mask the original failure
        return repr(err)
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    if isinstance(desc, bytes):
        desc = desc.decode(errors="replace")
    return f"{name} ({desc})"


def cuda_call(cudart: Any, result: Any, call: str) -> Any:
    """Check a cuda-python result tuple `(err, *values)`; return None, the one value, or the tuple of values.

    `call` names what was called (with its arguments where useful), for the error message.
    """
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if int(err) != 0:
        raise CudaError(f"{call} failed: {error_text(cudart, err)}")
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return values


def cuda_version_text(version: int) -> str:
    """CUDA's integer version (12060) as text ("12.6")."""
    return f"{version // 1000}.{version % 1000 // 10}"


def driver_runtime_problem(cudart: Any) -> str | None:
    """Why this CUDA runtime cannot run on this driver (a runtime newer than the driver, or a CUDA 11 driver:
    JetPack 5), or None. cudaDriverGetVersion and cudaRuntimeGetVersion work even when the driver is too old;
    used to explain a failed first runtime call (cudaErrorInsufficientDriver) with the fix."""
    try:
        driver = int(cuda_call(cudart, cudart.cudaDriverGetVersion(), "cudaDriverGetVersion"))
        runtime = int(cuda_call(cudart, cudart.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion"))
    except (CudaError, AttributeError):
        return None
    if driver == 0:
        return None  # no driver at all: the original error says so
    if driver < 12000:
        return (
            f"the NVIDIA driver supports CUDA {cuda_version_text(driver)} only; df2infer's GPU path needs a CUDA 12 or 13 "
            "driver (on a Jetson: JetPack 6 or 7; JetPack 5 is CUDA 11.4 and Python 3.8, which this package does not support)"
        )
    if runtime > driver:
        return (
            f"cuda-bindings carries the CUDA runtime {cuda_version_text(runtime)}, newer than the driver's CUDA "
            f"{cuda_version_text(driver)}; on a Jetson (JetPack 6: CUDA 12.6) install the matching bindings with "
            f"`pip install 'df2infer[jetson]'` ({JETSON_CUDA_BINDINGS}) or NVIDIA's cuda-compat package; elsewhere "
            "update the NVIDIA driver or install cuda-bindings of the driver's CUDA version"
        )
    return None


def device_properties(cudart: Any, index: int) -> tuple[str, str]:
    """(GPU name, compute capability 'major.minor') of CUDA device `index`."""
    props = cuda_call(cudart, cudart.cudaGetDeviceProperties(index), f"cudaGetDeviceProperties({index})")
    name = props.name
    if isinstance(name, bytes):
        name = name.split(b"\0", 1)[0].decode(errors="replace")
    return str(name), f"{props.major}.{props.minor}"
