"""TensorRT engines from ONNX files with the runtime's dependencies only (no torch): `builder.build_engine`, the
`df2infer build-engine` verb, and the INT8 calibration images shared with the export side."""
