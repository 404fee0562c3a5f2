"""df2infer_export.lint: TensorRT-10 parser support, static restrictions and static output shapes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper as nh

from df2infer_export.lint import OnnxLintError, check_onnx, lint_onnx, load_op_table, main

try:
    from tests.tiny_deploy_graph import build_tiny_deploy_graph
except ImportError:  # tests/ is not a package and the repo root is not on sys.path
    from tiny_deploy_graph import build_tiny_deploy_graph


def _errors(problems, kind=None):
    return [p for p in problems if p.severity == "error" and (kind is None or p.kind == kind)]


def _small(nodes, outputs, inits=(), opset=17, in_shape=("batch", 3, 8, 8)):
    g = h.make_graph(nodes, "t", [h.make_tensor_value_info("images", TP.FLOAT, list(in_shape))], outputs, list(inits))
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def test_op_table_is_packaged_and_parsed():
    t = load_op_table()
    assert t["RoiAlign"].supported and TP.FLOAT in t["RoiAlign"].types and TP.DOUBLE not in t["RoiAlign"].types
    assert not t["Unique"].supported
    assert TP.INT64 in t["ConstantOfShape"].types  # the table's "INF64" typo is read as INT64
    assert "3840" in t["TopK"].restrictions


def test_clean_deploy_graph_passes(tmp_path):
    p = tmp_path / "tiny.onnx"
    onnx.save(build_tiny_deploy_graph(), p)
    assert lint_onnx(p) == []
    assert check_onnx(p) == []
    assert main([str(p)]) == 0


def test_custom_domain_and_contrib_ops_flagged():
    nodes = [
        h.make_node("Relu", ["images"], ["r"], name="ok"),
        h.make_node("EfficientNMS_TRT", ["r"], ["p"], name="plugin", domain="trt.plugins"),
        h.make_node("FusedConv", ["p"], ["out"], name="contrib", domain="com.microsoft"),
    ]
    m = _small(nodes, [h.make_tensor_value_info("out", TP.FLOAT, ["batch", 3, 8, 8])])
    m.opset_import.extend([h.make_opsetid("trt.plugins", 1), h.make_opsetid("com.microsoft", 1)])
    errs = _errors(lint_onnx(m), "domain")
    assert {p.node for p in errs} == {"plugin", "contrib"}
    assert any("TensorRT cannot parse" in p.message for p in errs)


def test_unsupported_op_flagged():
    nodes = [h.make_node("Unique", ["images"], ["u"], name="uniq", sorted=1), h.make_node("Relu", ["images"], ["out"], name="r")]
    m = _small(nodes, [h.make_tensor_value_info("out", TP.FLOAT, ["batch", 3, 8, 8])])
    errs = _errors(lint_onnx(m), "unsupported_op")
    assert [(p.node, p.op_type) for p in errs] == [("uniq", "Unique")]


def _topk_model(k):
    nodes = [
        h.make_node("Reshape", ["images", "shape"], ["flat"], name="flat"),
        h.make_node("TopK", ["flat", "k"], ["out", "idx"], name="topk"),
    ]
    inits = [nh.from_array(np.array([0, -1], np.int64), "shape"), nh.from_array(np.array([k], np.int64), "k")]
    return _small(nodes, [h.make_tensor_value_info("out", TP.FLOAT, ["batch", k])], inits, in_shape=("batch", 4000, 1, 1))


def test_topk_k_too_large_flagged(tmp_path):
    m = _topk_model(4000)
    errs = _errors(lint_onnx(m))
    assert len(errs) == 1 and errs[0].kind == "restriction" and errs[0].op_type == "TopK" and "4000" in errs[0].message
    p = tmp_path / "topk.onnx"
    onnx.save(m, p)
    with pytest.raises(OnnxLintError, match="K = 4000"):
        check_onnx(p)
    assert main([str(p)]) == 1
    assert lint_onnx(_topk_model(3839)) == []


def test_data_dependent_output_shape_flagged():
    nodes = [h.make_node("NonZero", ["images"], ["nz"], name="nonzero")]
    m = _small(nodes, [h.make_tensor_value_info("nz", TP.INT64, None)])
    errs = _errors(lint_onnx(m), "output_shape")
    assert errs and all("nz" in p.message for p in errs)
    assert any("not static" in p.message for p in errs)


def test_output_batch_dim_must_be_the_input_batch():
    nodes = [h.make_node("Reshape", ["images", "shape"], ["out"], name="r")]
    inits = [nh.from_array(np.array([2, 3, 64], np.int64), "shape")]
    m = _small(nodes, [h.make_tensor_value_info("out", TP.FLOAT, None)], inits)
    errs = _errors(lint_onnx(m), "output_shape")
    assert len(errs) == 1 and "batch" in errs[0].message


def test_opset_types_and_zero_points():
    nodes = [
        h.make_node("Cast", ["images"], ["d"], name="to_double", to=TP.DOUBLE),
        h.make_node("Cast", ["d"], ["f"], name="to_float", to=TP.FLOAT),
        h.make_node("QuantizeLinear", ["f", "s", "zp"], ["q"], name="q"),
        h.make_node("DequantizeLinear", ["q", "s", "zp"], ["out"], name="dq"),
    ]
    inits = [nh.from_array(np.array(0.1, np.float32), "s"), nh.from_array(np.array(3, np.int8), "zp")]
    m = _small(nodes, [h.make_tensor_value_info("out", TP.FLOAT, ["batch", 3, 8, 8])], inits, opset=16)
    probs = lint_onnx(m)
    assert _errors(probs, "opset")
    types = _errors(probs, "type")
    assert {p.node for p in types} == {"to_double", "to_float"}  # cast to DOUBLE; Cast of a DOUBLE input
    zps = [p for p in _errors(probs, "restriction") if "zero point" in p.message]
    assert {p.node for p in zps} == {"q", "dq"}
