"""The numpy references of the runtime's array operations, one concern per module:

    letterbox   image -> graph input (letterbox, to_input_batch) and back (scale_boxes_back)
    boxes       clip_boxes, box_iou, suppress_overlaps
    masks       paste_masks: box-relative mask probabilities -> compact image masks
    landmarks   decode_landmarks: heatmaps -> points
    decode      decode_detections: one image's graph outputs -> Detections
    options     DecodeOptions: how outputs become Detections (conf, masks, landmark method, ...), held once

Each defines its semantics exactly, because the CUDA twins (ops/cuda/) are checked against them.
"""
