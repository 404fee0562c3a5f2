"""A tiny deploy-graph-shaped ONNX model built with onnx.helper, for the lint and precision tests.

It follows the contract (input `images` float32 [B,3,32,32]; outputs num_dets, boxes, scores,
labels, masks, landmark_heatmaps, embeddings with static shapes but for the batch) and uses the
ops the real Match R-CNN deploy graph will: Conv, Relu, Resize, Add, Sigmoid, TopK (constant K),
GatherElements, Exp (under `box_decode/`), NonMaxSuppression, ScatterND, RoiAlign, ConvTranspose,
GlobalAveragePool, Gemm, MatMul, Cast, Reshape. Random weights, seeded.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper as nh

from df2infer.contract import METADATA_KEY, Contract

N = 10  # max detections
H = W = 32


def tiny_contract() -> Contract:
    return Contract(
        input_height=H,
        input_width=W,
        max_detections=N,
        mask_size=8,
        heatmap_size=8,
        max_landmarks=3,
        embedding_dim=16,
        model={"name": "tiny-test"},
    )


def build_tiny_deploy_graph(opset: int = 17, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name, arr):
        inits.append(nh.from_array(np.asarray(arr), name))
        return name

    def w(name, *shape, scale=0.3):
        return const(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    def n(op, ins, outs, name, **attrs):
        nodes.append(h.make_node(op, ins, outs, name=name, **attrs))
        return outs[0]

    x = n("Mul", ["images", const("inv255", np.array(1 / 255, np.float32))], ["x"], "norm/mul")
    f1 = n("Conv", [x, w("c1.w", 8, 3, 3, 3), w("c1.b", 8)], ["f1c"], "backbone/conv1", pads=[1, 1, 1, 1])
    f1 = n("Relu", [f1], ["f1"], "backbone/relu1")
    f2 = n("Conv", [f1, w("c2.w", 8, 8, 3, 3, scale=0.2), w("c2.b", 8)], ["f2c"], "backbone/conv2", pads=[1, 1, 1, 1], strides=[2, 2])
    f2 = n("Relu", [f2], ["f2"], "backbone/relu2")
    up = n("Resize", [f2, "", const("up.scales", np.array([1, 1, 2, 2], np.float32))], ["up"], "fpn/resize", mode="nearest")
    p = n("Add", [f1, up], ["p"], "fpn/add")
    reg = n("Conv", [p, w("reg.w", 4, 8, 1, 1, scale=0.1), w("reg.b", 4, scale=0.1)], ["reg"], "head/reg")
    obj = n("Conv", [p, w("obj.w", 1, 8, 1, 1), w("obj.b", 1)], ["obj"], "head/obj")
    obj = n("Sigmoid", [obj], ["obj_s"], "head/obj_sigmoid")
    flat = n("Reshape", [obj, const("shape_b_1024", np.array([0, H * W], np.int64))], ["obj_flat"], "head/flat")
    n("TopK", [flat, const("topk.k", np.array([N], np.int64))], ["top_scores", "top_idx"], "postproc/topk")
    # box decoding: deltas -> boxes around each cell (kept FP32 by name prefix)
    reg = n("Reshape", [reg, const("shape_b_4_1024", np.array([0, 4, H * W], np.int64))], ["reg_flat"], "box_decode/flat")
    reg = n(
        "Clip",
        [reg, const("clip.lo", np.array(-4, np.float32)), const("clip.hi", np.array(4, np.float32))],
        ["reg_clip"],
        "box_decode/clip",
    )
    e = n("Exp", [reg], ["reg_exp"], "box_decode/exp")
    e = n("Mul", [e, const("box.scale", np.array(4.0, np.float32))], ["half_wh"], "box_decode/scale")
    centers = np.stack(np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5), 0).reshape(2, -1).astype(np.float32)
    ctr = const("box.ctr", np.concatenate([centers, centers], 0)[None])  # [1,4,1024]
    sign = const("box.sign", np.array([-1, -1, 1, 1], np.float32).reshape(1, 4, 1))
    e = n("Mul", [e, sign], ["signed"], "box_decode/sign")
    allb = n("Add", [ctr, e], ["all_boxes"], "box_decode/add")
    idx = n("Unsqueeze", ["top_idx", const("ax1", np.array([1], np.int64))], ["idx_u"], "postproc/idx_u")
    idx = n("Tile", [idx, const("tile4", np.array([1, 4, 1], np.int64))], ["idx_t"], "postproc/idx_t")
    b = n("GatherElements", [allb, idx], ["boxes_t"], "postproc/gather_boxes", axis=2)
    boxes = n("Transpose", [b], ["boxes_raw"], "postproc/boxes_t", perm=[0, 2, 1])
    sc3 = n("Unsqueeze", ["top_scores", "ax1"], ["scores3"], "nms/scores3")
    sel = n(
        "NonMaxSuppression",
        [
            boxes,
            sc3,
            const("nms.max", np.array([N], np.int64)),
            const("nms.iou", np.array([0.5], np.float32)),
            const("nms.thr", np.array([0.05], np.float32)),
        ],
        ["sel"],
        "nms/nms",
    )
    bi_ = n("Gather", [sel, const("cols02", np.array([0, 2], np.int64))], ["sel02"], "nms/sel02", axis=1)
    nsel = n("Shape", [sel], ["sel_shape"], "nms/sel_shape", start=0, end=1)
    ones = n("ConstantOfShape", [nsel], ["ones"], "nms/ones", value=nh.from_array(np.array([1], np.float32)))
    zeros = n("Mul", ["top_scores", const("zero", np.array(0, np.float32))], ["zeros"], "nms/zeros")
    keep = n("ScatterND", [zeros, bi_, ones], ["keep"], "nms/keep")
    n("Mul", ["top_scores", keep], ["scores"], "postproc/scores")
    cnt = n("ReduceSum", [keep, const("ax1b", np.array([1], np.int64))], ["cnt"], "postproc/count", keepdims=0)
    n("Cast", [cnt], ["num_dets"], "postproc/num_dets", to=TP.INT32)
    n("Cast", [keep], ["labels"], "postproc/labels", to=TP.INT32)
    n(
        "Mul",
        [boxes, n("Unsqueeze", [keep, const("ax2", np.array([2], np.int64))], ["keep3"], "postproc/keep3")],
        ["boxes"],
        "postproc/boxes",
    )
    # RoI features: batch index per box
    shp = n("Shape", ["images"], ["img_shape"], "roi/shape")
    bsz = n("Gather", [shp, const("zero_i", np.array(0, np.int64))], ["bsz"], "roi/bsz", axis=0)
    rng_ = n("Range", [const("zero_i2", np.array(0, np.int64)), bsz, const("one_i", np.array(1, np.int64))], ["brange"], "roi/range")
    bi = n("Unsqueeze", [rng_, "ax1"], ["brange_u"], "roi/brange_u")
    bi = n("Tile", [bi, const("tileN", np.array([1, N], np.int64))], ["brange_t"], "roi/brange_t")
    bi = n("Reshape", [bi, const("m1", np.array([-1], np.int64))], ["batch_idx"], "roi/batch_idx")
    rois = n("Reshape", ["boxes_raw", const("m1_4", np.array([-1, 4], np.int64))], ["rois"], "roi/rois")
    feat = n("RoiAlign", [p, rois, bi], ["roi_feat"], "roi/align", output_height=4, output_width=4, sampling_ratio=2, spatial_scale=1.0)
    m = n("ConvTranspose", [feat, w("mask.w", 8, 1, 2, 2), w("mask.b", 1)], ["mask_logit"], "head/mask_deconv", strides=[2, 2])
    m = n("Sigmoid", [m], ["mask_prob"], "head/mask_sigmoid")
    n("Reshape", [m, const("mask_shape", np.array([-1, N, 8, 8], np.int64))], ["masks"], "head/masks")
    k = n("ConvTranspose", [feat, w("kp.w", 8, 3, 2, 2), w("kp.b", 3)], ["kp_logit"], "head/kp_deconv", strides=[2, 2])
    n("Reshape", [k, const("kp_shape", np.array([-1, N, 3, 8, 8], np.int64))], ["landmark_heatmaps"], "head/kp")
    g = n("GlobalAveragePool", [feat], ["gap"], "head/gap")
    g = n("Flatten", [g], ["gap_flat"], "head/gap_flat")
    g = n("Gemm", [g, w("emb1.w", 16, 8), w("emb1.b", 16)], ["emb1"], "head/emb_fc1", transB=1)
    g = n("Relu", [g], ["emb1r"], "head/emb_relu")
    g = n("MatMul", [g, w("emb2.w", 16, 16)], ["emb2"], "head/emb_fc2")
    n("Reshape", [g, const("emb_shape", np.array([-1, N, 16], np.int64))], ["embeddings"], "head/emb")

    B = "batch"
    outputs = [
        h.make_tensor_value_info("num_dets", TP.INT32, [B]),
        h.make_tensor_value_info("boxes", TP.FLOAT, [B, N, 4]),
        h.make_tensor_value_info("scores", TP.FLOAT, [B, N]),
        h.make_tensor_value_info("labels", TP.INT32, [B, N]),
        h.make_tensor_value_info("masks", TP.FLOAT, [B, N, 8, 8]),
        h.make_tensor_value_info("landmark_heatmaps", TP.FLOAT, [B, N, 3, 8, 8]),
        h.make_tensor_value_info("embeddings", TP.FLOAT, [B, N, 16]),
    ]
    graph = h.make_graph(nodes, "tiny_deploy", [h.make_tensor_value_info("images", TP.FLOAT, [B, 3, H, W])], outputs, inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)], producer_name="df2infer-tests")
    model.ir_version = 8
    h.set_model_props(model, {METADATA_KEY: tiny_contract().to_json()})
    onnx.checker.check_model(model, full_check=True)
    return model


def random_images(batch: int = 2, seed: int = 1) -> np.ndarray:
    """A float32 [B,3,H,W] batch with some structure (smooth blobs), values 0..255."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    out = np.empty((batch, 3, H, W), np.float32)
    for i in range(batch):
        for c in range(3):
            cx, cy, s = rng.uniform(4, 28), rng.uniform(4, 28), rng.uniform(3, 10)
            out[i, c] = 255 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s)) + rng.uniform(0, 20, (H, W))
    return np.clip(out, 0, 255)
