"""A tiny ONNX graph that satisfies the df2infer contract, for runtime tests without a trained model.

Outputs are constants broadcast to the batch (known answers), except `embeddings`, which scale with
each image's mean pixel value so tests can tell images in a batch apart:
    embeddings[b, i, :] = mean(images[b]) * EMB_BASIS[i, :]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from df2infer.contract import METADATA_KEY, Contract

H, W = 128, 160  # graph input
N = 6  # max detections
M = 28  # mask size
K = 24  # heatmap size
D = 8  # embedding dim
NUM_DETS = 4
BOXES = np.array([[10, 20, 70, 100], [80, 10, 150, 120], [30, 30, 60, 60], [5, 5, 155, 125], [0, 0, 0, 0], [0, 0, 0, 0]], np.float32)
SCORES = np.array([0.95, 0.8, 0.5, 0.2, 0, 0], np.float32)
LABELS = np.array([1, 8, 9, 4, 0, 0], np.int32)
SIM_W = np.linspace(-1, 1, 2 * D, dtype=np.float32).reshape(2, D)
SIM_B = np.array([0.5, -0.25], np.float32)
EMB_BASIS = (np.arange(N * D, dtype=np.float32).reshape(N, D) % 5 - 2) / 100.0


def disk_mask() -> np.ndarray:
    yy, xx = np.mgrid[0:M, 0:M] + 0.5
    inside = (xx - M / 2) ** 2 + (yy - M / 2) ** 2 <= (0.4 * M) ** 2
    return np.where(inside, 0.9, 0.05).astype(np.float32)


def peak_cells() -> np.ndarray:
    """int [N, 39, 2] (row, col) of each planted heatmap peak."""
    i = np.arange(N)[:, None]
    j = np.arange(39)[None, :]
    return np.stack([(3 * j + i) % (K - 4) + 2, (5 * j + 2 * i) % (K - 4) + 2], axis=2)


def heatmaps() -> np.ndarray:
    """float32 [N, 39, K, K]: a Gaussian bump (logit 8 at the peak cell) around each planted peak."""
    pk = peak_cells()
    yy, xx = np.mgrid[0:K, 0:K]
    d2 = (yy[None, None] - pk[..., 0, None, None]) ** 2 + (xx[None, None] - pk[..., 1, None, None]) ** 2
    return (8.0 - d2 / 2.0).astype(np.float32)


def contract(**overrides) -> Contract:
    c = Contract(
        input_height=H,
        input_width=W,
        max_detections=N,
        mask_size=M,
        heatmap_size=K,
        embedding_dim=D,
        max_batch=4,
        similarity_weight=SIM_W.tolist(),
        similarity_bias=SIM_B.tolist(),
        model={"name": "fake", "note": "test fixture"},
    )
    for k, v in overrides.items():
        setattr(c, k, v)
    return c


def build(path: Path, contract_json: str | None = None, metadata: bool = True, rename: dict | None = None) -> Path:
    """Write the fake model to `path`. contract_json overrides the embedded metadata text;
    metadata=False omits it; rename maps output names to other names (to break the contract)."""
    rename = rename or {}
    consts = {
        "num_dets": np.array([NUM_DETS], np.int32),
        "boxes": BOXES[None],
        "scores": SCORES[None],
        "labels": LABELS[None],
        "masks": np.broadcast_to(disk_mask(), (1, N, M, M)).copy(),
        "landmark_heatmaps": heatmaps()[None],
    }
    nodes = [
        helper.make_node("Shape", ["images"], ["shape"]),
        helper.make_node("Slice", ["shape", "i0", "i1"], ["bdim"]),
    ]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "i0"), numpy_helper.from_array(np.array([1], np.int64), "i1")]
    for name, value in consts.items():
        inits.append(numpy_helper.from_array(value, f"{name}_c"))
        if name == "num_dets":
            nodes.append(helper.make_node("Expand", [f"{name}_c", "bdim"], [rename.get(name, name)]))
            continue
        inits.append(numpy_helper.from_array(np.array(value.shape[1:], np.int64), f"{name}_dims"))
        nodes.append(helper.make_node("Concat", ["bdim", f"{name}_dims"], [f"{name}_shape"], axis=0))
        nodes.append(helper.make_node("Expand", [f"{name}_c", f"{name}_shape"], [rename.get(name, name)]))
    inits.append(numpy_helper.from_array(EMB_BASIS[None], "emb_c"))
    inits.append(numpy_helper.from_array(np.array([1, 2], np.int64), "ax12"))
    nodes += [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["mean", "ax12"], ["mean3"]),
        helper.make_node("Mul", ["mean3", "emb_c"], [rename.get("embeddings", "embeddings")]),
    ]
    c = contract()
    shapes = c.output_shapes("B")
    f, i32 = TensorProto.FLOAT, TensorProto.INT32
    types = {"num_dets": i32, "labels": i32}
    outputs = [helper.make_tensor_value_info(rename.get(n, n), types.get(n, f), list(s)) for n, s in shapes.items()]
    graph = helper.make_graph(
        nodes, "fake_match_rcnn", [helper.make_tensor_value_info("images", f, ["B", 3, H, W])], outputs, initializer=inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="df2infer-tests")
    model.ir_version = 9
    if metadata:
        helper.set_model_props(model, {METADATA_KEY: contract_json if contract_json is not None else c.to_json()})
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def wrong_version_json() -> str:
    raw = json.loads(contract().to_json())
    raw["version"] = 99
    return json.dumps(raw)
