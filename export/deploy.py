"""The deploy form of Match R-CNN: static shapes, standard ONNX ops (docs/design.md, "The deploy graph").

    deploy = DeployMatchRCNN(model, max_detections=50, num_proposals=100)
    num_dets, boxes, scores, labels, masks, landmark_heatmaps, embeddings = deploy(images)
    gated = DeployMatchRCNN(model, max_detections=20, gate_heads=True)   # the CPU form
    outputs = gated(images, torch.tensor([0.3]))                          # heads on rows >= 0.3

Input float32 [B, 3, H, W] (RGB 0..255, letterboxed; H, W fixed at construction, B free); outputs
as df2infer.contract (N = max_detections, padded rows are zeros, num_dets/labels int32).

What the graph does, and where it differs from the eager model (export/model, torchvision based):
  RPN        per level: TopK of the objectness logits (k = min(pre_nms_top_n, anchors in the level),
             the eager model does the same per level); anchors are constants for the fixed H, W;
             decoding (BoxCoder 1,1,1,1) and clipping under `box_decode/`; boxes smaller than 1e-3
             dropped; NMS *per level* as torchvision's RPN does (on the sigmoid scores; detectron2
             models: on the logits, whose sigmoid ties at 1.0), with one ONNX NonMaxSuppression call
             on level-offset boxes ([B, A, 4], scores [B, 1, A]); the selection is turned into a
             keep mask (ScatterND) and TopK gives exactly P = num_proposals proposals per image.
             When NMS keeps fewer than P, the rest are padding rows, flagged invalid: their
             detections are masked out, so they change nothing but cost box-head work.
  RoIAlign   one ONNX RoiAlign (output_half_pixel = torchvision aligned=False, sampling_ratio 2)
             per head on a *packed* feature map: the FPN levels stacked along H, each with one
             edge-replicated row and column (bilinear samples at the far border then read the
             border value, as torchvision's clamping does) and zero-padded to a common width;
             each RoI is mapped to its level by the FPN rule (canonical 224 at level 4,
             torchvision LevelMapper) and its box scaled by that level's 1/stride and shifted to
             the level's rows. Same numbers as MultiScaleRoIAlign for boxes inside the image
             (a RoI less than one feature cell high or wide at the bottom or right border, where
             torchvision's roi width of at least 1 reaches past the map, reads the next rows
             instead of zeros), and each RoI is pooled once instead of once per level.
  box head   class-specific decoding (10, 10, 5, 5) under `box_decode/`, softmax, score > thresh,
             boxes >= 1e-2, then class-aware NMS as one NonMaxSuppression call on class-offset boxes
             ([B, 13 P, 4], scores [B, 1, 13 P]; torchvision's batched_nms coordinate trick),
             keep mask, TopK to N: torchvision's keep[:N] (ties may order differently).
  heads      on the N detection boxes (static), or with gate_heads=True on the first K rows only,
             K = the most detections scoring >= the `min_head_score` input in any image of the batch
             (HeadRows; Range of a run-time length: ONNX Runtime only, TensorRT needs static heads);
             the head outputs are gathered back into the N rows and rows >= K zeroed. Mask head:
             torchvision's predictor computed sub-pixel (SubpixelMaskPredictor: 1x1 convs at the RoI
             resolution + DepthToSpace, same sums as its ConvTranspose); mask logits gathered at the
             predicted class (GatherElements) and sigmoid; landmark logits of the predicted class's
             39 slots, the 4x4 stride-2 deconv computed sub-pixel too (SubpixelLandmarkPredictor: one 3x3
             conv to the 4 sub-pixels, the 39 gathered scorer rows, DepthToSpace of the 39 logit maps);
             embeddings. Padding rows are zeroed.
Imported checkpoints (df2infer_export.checkpoint_import) bring their family's semantics through the
model config, and the graph follows it: RoiAlign output_half_pixel (detectron2 aligned=True) and
sampling ratio (0 = adaptive), the RPN and detection minimum sizes, unrounded/offset anchors (they
are constants taken from the model's anchor generator), class-agnostic masks, the BGR flip and
pixel mean/std in `normalize`. A head the model lacks gives its output as the contract's
placeholder (zeros with sizes 1, df2infer.contract "Heads"), computed from nothing. A landmark
predictor of another shape (torchvision's deconv + bilinear x2) runs as the model defines it.
Node names: box decoding under `box_decode/`, NMS and keep masks under `nms/`, level mapping,
score filtering and output gathering under `postproc/` (df2infer_export.precision keeps them FP32).
"""

from __future__ import annotations

import math

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision.* and their ONNX symbolics)
from torch import nn
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import boxes as box_ops

from .model.box_head import BOX_CODER_WEIGHTS
from .model.landmark_head import LandmarkPredictor

BBOX_XFORM_CLIP = math.log(1000.0 / 16)
RPN_MIN_SIZE = 1e-3  # torchvision RegionProposalNetwork.min_size
# the score given to rows NMS / TopKeep must not select: below any sigmoid score (-1), or below any objectness logit
# (-1e4: sigmoid of it is 0 in float32 by a factor of exp(-9900); FP16-representable)
SCORE_FLOOR, LOGIT_FLOOR = -1.0, -1e4
DET_MIN_SIZE = 1e-2  # torchvision RoIHeads.postprocess_detections


# -------------------------------------------------------------------------------------------------
# ONNX ops through autograd.Function symbolics (the eager forward implements the op's semantics)


class _BatchedNMS(torch.autograd.Function):
    """ONNX NonMaxSuppression: boxes [B, A, 4] (x1, y1, x2, y2), scores [B, C, A] -> int64 [K, 3]
    (batch, class, box). Per (batch, class): boxes with score > score_threshold, greedy NMS at
    iou_threshold, at most max_output selected, in descending score order."""

    @staticmethod
    def forward(ctx, boxes, scores, max_output: int, iou_threshold: float, score_threshold: float):
        out = []
        for b in range(scores.shape[0]):
            for c in range(scores.shape[1]):
                s = scores[b, c]
                idx = torch.where(s > score_threshold)[0]
                keep = box_ops.nms(boxes[b, idx], s[idx], iou_threshold)[:max_output]
                sel = idx[keep]
                out.append(torch.stack([torch.full_like(sel, b), torch.full_like(sel, c), sel], 1))
        if not out:
            return boxes.new_zeros((0, 3), dtype=torch.int64)
        return torch.cat(out)

    @staticmethod
    def symbolic(g, boxes, scores, max_output, iou_threshold, score_threshold):
        return g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            g.op("Constant", value_t=torch.tensor([max_output], dtype=torch.int64)),
            g.op("Constant", value_t=torch.tensor([iou_threshold], dtype=torch.float32)),
            g.op("Constant", value_t=torch.tensor([score_threshold], dtype=torch.float32)),
            center_point_box_i=0,
        )


class _KeepMask(torch.autograd.Function):
    """selected [K, 3] from NonMaxSuppression -> float [B, A] with 1 at (batch, box) of every
    selection (class ignored), 0 elsewhere. ONNX: ScatterND into like * 0 (finite `like`; keeps the
    shape known to ONNX shape inference, which ConstantOfShape(Shape(like)) does not)."""

    @staticmethod
    def forward(ctx, selected, like):
        keep = torch.zeros_like(like)
        keep[selected[:, 0], selected[:, 2]] = 1.0
        return keep

    @staticmethod
    def symbolic(g, selected, like):
        idx = g.op("Gather", selected, g.op("Constant", value_t=torch.tensor([0, 2], dtype=torch.int64)), axis_i=1)
        first = g.op("Gather", selected, g.op("Constant", value_t=torch.tensor(0, dtype=torch.int64)), axis_i=1)
        ones = g.op("ConstantOfShape", g.op("Shape", first), value_t=torch.tensor([1.0], dtype=torch.float32))
        zeros = g.op("Mul", like, g.op("Constant", value_t=torch.tensor(0.0, dtype=torch.float32)))  # static shape
        return g.op("ScatterND", zeros, idx, ones)


class _Rows(torch.autograd.Function):
    """0-d int64 k -> int64 [k] = 0..k-1. ONNX Range(0, k, 1): a length known only at run time
    (ONNX Runtime is fine with it; TensorRT is not, so only gated-head graphs use it)."""

    @staticmethod
    def forward(ctx, k):
        return torch.arange(int(k), dtype=torch.int64)

    @staticmethod
    def symbolic(g, k):
        return g.op(
            "Range",
            g.op("Constant", value_t=torch.tensor(0, dtype=torch.int64)),
            k,
            g.op("Constant", value_t=torch.tensor(1, dtype=torch.int64)),
        )


# -------------------------------------------------------------------------------------------------
# scoped pieces (module attribute names give the ONNX node-name prefixes)


class BoxDecode(nn.Module):
    """torchvision BoxCoder.decode_single + clip_boxes_to_image, op for op.
    deltas [..., 4], ref boxes broadcastable [..., 4] -> clipped boxes [..., 4]."""

    def forward(self, deltas, ref, weights: tuple, height: int, width: int):
        wx, wy, ww, wh = weights
        widths = ref[..., 2] - ref[..., 0]
        heights = ref[..., 3] - ref[..., 1]
        ctr_x = ref[..., 0] + 0.5 * widths
        ctr_y = ref[..., 1] + 0.5 * heights
        dx = deltas[..., 0] / wx
        dy = deltas[..., 1] / wy
        dw = torch.clamp(deltas[..., 2] / ww, max=BBOX_XFORM_CLIP)
        dh = torch.clamp(deltas[..., 3] / wh, max=BBOX_XFORM_CLIP)
        pcx = dx * widths + ctr_x
        pcy = dy * heights + ctr_y
        pw = torch.exp(dw) * widths
        ph = torch.exp(dh) * heights
        cw, ch = 0.5 * pw, 0.5 * ph
        x1 = (pcx - cw).clamp(min=0, max=width)
        y1 = (pcy - ch).clamp(min=0, max=height)
        x2 = (pcx + cw).clamp(min=0, max=width)
        y2 = (pcy + ch).clamp(min=0, max=height)
        return torch.stack([x1, y1, x2, y2], -1)


class GroupNMS(nn.Module):
    """NMS within groups (FPN levels or classes) by the coordinate-offset trick, one
    NonMaxSuppression call: boxes [B, A, 4], scores [B, A], group offsets [A] (constant),
    valid [B, A] bool -> keep float [B, A] (1 = selected)."""

    def forward(self, boxes, scores, offsets, valid, max_output: int, iou: float, score_threshold: float, floor: float = SCORE_FLOOR):
        shifted = boxes + offsets[:, None]
        s = torch.where(valid, scores, torch.full_like(scores, floor))
        sel = _BatchedNMS.apply(shifted, s[:, None, :], int(max_output), float(iou), float(score_threshold))
        return _KeepMask.apply(sel, scores)


class TopKeep(nn.Module):
    """keep mask [B, A] + scores [B, A] -> the k best kept: (scores [B, k], indices [B, k], valid [B, k]).
    floor: a value below every score (rows not kept get it)."""

    def forward(self, scores, keep, k: int, floor: float = SCORE_FLOOR):
        masked = torch.where(keep > 0.5, scores, torch.full_like(scores, floor))
        top, idx = masked.topk(k, dim=1)
        return top, idx, top > 0.5 * floor


class RoILevels(nn.Module):
    """FPN level of each RoI, rois [R, 5] (batch, x1, y1, x2, y2) -> rois on the packed map: the box scaled by
    its level's 1/stride and shifted down to the level's rows (FP32 scope). rule "torchvision" (LevelMapper):
    floor(4 + log2(sqrt(area) / 224) + 1e-6); "detectron2" (assign_boxes_to_levels): floor(4 + log2(sqrt(area)
    / 224 + 1e-8)); they differ for boxes within ~1e-6 below a level boundary (sqrt(area) = 224 * 2**k)."""

    def forward(self, rois, scales, row_offsets, k_min: int, k_max: int, rule: str = "torchvision"):
        boxes = rois[:, 1:]
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        if rule == "detectron2":
            lvl = torch.floor(4 + torch.log2(torch.sqrt(area) / 224 + 1e-8))
        else:
            lvl = torch.floor(4 + torch.log2(torch.sqrt(area) / 224) + 1e-6)
        lvl = (torch.clamp(lvl, min=k_min, max=k_max) - k_min).to(torch.int64)
        scale, shift = scales[lvl][:, None], row_offsets[lvl]
        shifted = boxes * scale + torch.stack([torch.zeros_like(shift), shift, torch.zeros_like(shift), shift], 1)
        return torch.cat([rois[:, :1], shifted], 1)


def pack_levels(feats: list[torch.Tensor], top: bool = False) -> torch.Tensor:
    """[B, C, H_i, W_i] per level -> [B, C, sum(H_i + 1), max(W_i) + 1]: levels stacked along H,
    each with its last row and column replicated once, then zero-padded on the right. top=True also
    replicates each level's first row above it (H_i + 2 rows per level): with aligned RoIAlign
    (half-pixel, detectron2) a box at the image's top edge samples half a cell above row 0, which
    must read row 0 (RoIAlign's clamping) and not the previous level's last row."""
    width = max(f.shape[-1] for f in feats) + 1
    out = []
    for f in feats:
        f = nn.functional.pad(f, (0, 1, 1 if top else 0, 1), mode="replicate")
        out.append(nn.functional.pad(f, (0, width - f.shape[-1], 0, 0)) if f.shape[-1] < width else f)
    return torch.cat(out, 2)


class HeadRows(nn.Module):
    """Gated heads: the detection rows the mask/landmark/matching heads run on (FP32 scope).
    boxes [B, N, 4], labels [B, N], scores [B, N] (descending), valid float [B, N], min_score [1] ->
      head boxes [B, K, 4] and labels [B, K]: the first K rows, K = the largest number of valid rows
        with score >= min_score in any image of the batch, at least 1 (scores are sorted, so those
        rows are a prefix);
      back int64 [N]: output row j reads head row min(j, K-1);
      keep float [B, N]: valid and j < K (the rows whose head outputs are kept, others zeroed)."""

    def forward(self, boxes, labels, scores, valid, min_score):
        n = scores.shape[1]
        count = ((scores >= min_score).to(scores.dtype) * valid).sum(1)
        k = torch.clamp(count.max(), min=1.0).to(torch.int64)
        rows = _Rows.apply(k)
        pos = torch.arange(n, dtype=torch.int64)
        return (
            boxes.index_select(1, rows),
            labels.index_select(1, rows),
            torch.minimum(pos, k - 1),
            valid * (pos < k).to(valid.dtype)[None, :],
        )


class SubpixelMaskPredictor(nn.Module):
    """torchvision's MaskRCNNPredictor (conv5_mask: ConvTranspose2d with kernel = stride = 2, ReLU,
    mask_fcn_logits: 1x1 conv to the class logits) computed at the RoI resolution and shuffled up
    once at the end: the deconv becomes a 1x1 conv to 4 * C channels (one per output sub-pixel),
    the logits a 1x1 conv applied to each sub-pixel's C channels, and DepthToSpace (pixel_shuffle)
    places the 4 * classes logit maps. The same sums; ONNX Runtime's CPU ConvTranspose and a
    DepthToSpace of the C-channel features each cost more than the whole head does this way.
    The weights are copied from the predictor when the deploy module is built."""

    def __init__(self, predictor: nn.Module):
        super().__init__()
        deconv, logits = predictor.conv5_mask, predictor.mask_fcn_logits
        k = deconv.kernel_size[0]
        if (
            deconv.kernel_size != deconv.stride
            or deconv.kernel_size[0] != deconv.kernel_size[1]
            or deconv.padding != (0, 0)
            or deconv.output_padding != (0, 0)
            or deconv.groups != 1
            or deconv.dilation != (1, 1)
            or logits.kernel_size != (1, 1)
        ):
            raise ValueError(f"SubpixelMaskPredictor needs a kernel == stride deconv and a 1x1 logits conv: {predictor}")
        w = deconv.weight.detach()  # [C_in, C, k, k]
        c_in, c = w.shape[:2]
        kk = k * k
        # sub-pixel p = a * k + b of output (c, k*i + a, k*j + b) lives in channel c * kk + p
        # (pixel_shuffle's channel order), for the features and for the logits alike
        self.register_buffer("w_up", w.permute(1, 2, 3, 0).reshape(c * kk, c_in, 1, 1).clone(), persistent=False)
        b = deconv.bias.detach() if deconv.bias is not None else w.new_zeros(c)
        self.register_buffer("b_up", b.repeat_interleave(kk).clone(), persistent=False)
        lw = logits.weight.detach()[:, :, 0, 0]  # [classes, C]
        n = lw.shape[0]
        w_log = torch.zeros(n, kk, c, kk)
        for p in range(kk):
            w_log[:, p, :, p] = lw
        self.register_buffer("w_logits", w_log.reshape(n * kk, c * kk, 1, 1), persistent=False)
        lb = logits.bias.detach() if logits.bias is not None else lw.new_zeros(n)
        self.register_buffer("b_logits", lb.repeat_interleave(kk).clone(), persistent=False)
        self.factor = k

    def forward(self, x):
        x = torch.relu(nn.functional.conv2d(x, self.w_up, self.b_up))
        return nn.functional.pixel_shuffle(nn.functional.conv2d(x, self.w_logits, self.b_logits), self.factor)


class SubpixelLandmarkPredictor(nn.Module):
    """The landmark predictor (model.landmark_head.LandmarkPredictor: a 4x4 stride-2 padding-1 ConvTranspose2d,
    ReLU, then the category's 39 gathered 1x1 scorer rows) computed at the RoI resolution and shuffled up once at
    the end: output pixel (2m + a, 2n + b) of the deconv only sees inputs m-1..m+1, n-1..n+1, so the deconv is one
    3x3 convolution to 4 * C channels (one per sub-pixel (a, b); kernel taps 3 - 2 * (d + 1) + a ... see below)
    and pixel_shuffle places them; the scorer runs on each sub-pixel's C channels before the shuffle, so only the
    39 logit maps are shuffled. The same sums; ONNX Runtime's CPU ConvTranspose has no INT8 kernel and is slow in
    FP32, while the 3x3 convolution is an ordinary (quantizable) Conv. Needs exactly one deconv (deconvs=1)."""

    def __init__(self, predictor: nn.Module):
        super().__init__()
        deconvs = [m for m in predictor.upsample.modules() if isinstance(m, nn.ConvTranspose2d)]
        if len(deconvs) != 1:
            raise ValueError(f"SubpixelLandmarkPredictor needs exactly one ConvTranspose2d, got {len(deconvs)}")
        d = deconvs[0]
        if (
            d.kernel_size != (4, 4)
            or d.stride != (2, 2)
            or d.padding != (1, 1)
            or d.output_padding != (0, 0)
            or d.groups != 1
            or d.dilation != (1, 1)
        ):
            raise ValueError(f"SubpixelLandmarkPredictor needs a 4x4 stride-2 padding-1 deconv: {d}")
        w = d.weight.detach()  # [C_in, C, 4, 4]
        c_in, c = w.shape[:2]
        # 1-D: output 2m + a takes input m + o (o in -1, 0, 1) through tap t = 2 * (m - i) + a + 1 = a + 1 - 2 * o,
        # when 0 <= t <= 3. Channel c * 4 + (2 * a + b) of the 3x3 conv is sub-pixel (a, b) (pixel_shuffle's order).
        w3 = w.new_zeros(c, 2, 2, c_in, 3, 3)
        for a in range(2):
            for b in range(2):
                for oy in (-1, 0, 1):
                    for ox in (-1, 0, 1):
                        ty, tx = a + 1 - 2 * oy, b + 1 - 2 * ox
                        if 0 <= ty <= 3 and 0 <= tx <= 3:
                            w3[:, a, b, :, oy + 1, ox + 1] = w[:, :, ty, tx].t()
        self.register_buffer("w_up", w3.reshape(c * 4, c_in, 3, 3).clone(), persistent=False)
        bias = d.bias.detach() if d.bias is not None else w.new_zeros(c)
        self.register_buffer("b_up", bias.repeat_interleave(4).clone(), persistent=False)
        self.score_weight, self.score_bias = predictor.score_weight, predictor.score_bias
        self.register_buffer("slots", predictor.slots.clone(), persistent=False)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = torch.relu(nn.functional.conv2d(x, self.w_up, self.b_up, padding=1))  # [R, 4C, P, P]
        r, c4, h, w = x.shape
        c = c4 // 4
        w_ext = torch.cat([self.score_weight, self.score_weight.new_zeros(1, c)], 0)
        b_ext = torch.cat([self.score_bias, self.score_bias.new_zeros(1)], 0)
        idx = self.slots[labels]  # [R, 39]
        out = torch.bmm(w_ext[idx], x.reshape(r, c, 4 * h * w)) + b_ext[idx][:, :, None]  # [R, 39, 4 P P]
        return nn.functional.pixel_shuffle(out.reshape(r, idx.shape[1] * 4, h, w), 2)


class Candidates(nn.Module):
    """Box-head candidates: softmax scores, validity (score > thresh, size >= 1e-2, proposal valid)."""

    def forward(self, cls_logits, boxes, pvalid, score_thresh: float, min_size: float = DET_MIN_SIZE):
        # cls_logits [B, P, 14], boxes [B, P, 13, 4], pvalid [B, P]
        scores = torch.softmax(cls_logits, -1)[:, :, 1:]
        w = boxes[..., 2] - boxes[..., 0]
        h = boxes[..., 3] - boxes[..., 1]
        valid = (scores > score_thresh) & big_enough(w, h, min_size) & pvalid[:, :, None]
        n = scores.shape[1] * scores.shape[2]  # static: P * 13 (a dynamic reshape would hide the shape)
        return scores.reshape(-1, n), boxes.reshape(-1, n, 4), valid.reshape(-1, n)


def big_enough(w, h, min_size: float):
    """torchvision's remove_small_boxes (w, h >= min_size); min_size 0 is detectron2's nonempty (w, h > 0)."""
    if min_size > 0:
        return (w >= min_size) & (h >= min_size)
    return (w > 0) & (h > 0)


class Gather(nn.Module):
    """Gather rows of x [B, A, ...] at idx [B, k]."""

    def forward(self, x, idx):
        if x.dim() == 2:
            return torch.gather(x, 1, idx)
        # one GatherElements per column keeps the output shape static ([B, k] from TopK)
        return torch.stack([torch.gather(x[:, :, j], 1, idx) for j in range(x.shape[2])], -1)


# -------------------------------------------------------------------------------------------------


class Stage(nn.Module):
    """A scope: `fn(*args)` runs under this module's attribute name (the ONNX node-name prefix).
    Nested modules name their nodes by their own attribute name, so the building blocks the stages
    call (box_decode, nms_*, postproc_*) are attributes of the deploy module with prefixed names."""

    def forward(self, fn, *args):
        return fn(*args)


class DeployMatchRCNN(nn.Module):
    """Static-shape deploy form of a MatchRCNN (eval mode, weights shared with `model`)."""

    def __init__(
        self,
        model,
        max_detections: int | None = None,
        num_proposals: int | None = None,
        input_size: int | tuple[int, int] | None = None,
        pre_nms_top_n: int | None = None,
        score_thresh: float | None = None,
        nms_thresh: float | None = None,
        gate_heads: bool = False,
    ):
        super().__init__()
        self.gate_heads = bool(gate_heads)
        model.eval()
        cfg = model.cfg
        self.model = model
        if input_size is None:
            input_size = model.input_size
        self.height, self.width = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        self.max_detections = int(max_detections or cfg["max_detections"])
        self.num_proposals = int(num_proposals or cfg["rpn_post_nms_top_n_test"])
        pre = int(pre_nms_top_n or cfg["rpn_pre_nms_top_n_test"])
        self.rpn_nms = float(cfg["rpn_nms_thresh"])
        self.score_thresh = float(cfg["box_score_thresh"] if score_thresh is None else score_thresh)
        self.nms_thresh = float(cfg["box_nms_thresh"] if nms_thresh is None else nms_thresh)
        rh = model.roi_heads
        self.num_classes = rh.box_predictor.cls_score.out_features - 1
        self.has_mask, self.has_landmarks, self.has_match = (
            rh.mask_head is not None,
            rh.keypoint_head is not None,
            rh.match_head is not None,
        )
        # a missing head's placeholder has its sizes 1 (the contract's)
        self.mask_size = model.mask_size if self.has_mask else 1
        self.heatmap_size = model.heatmap_size if self.has_landmarks else 1
        self.embedding_dim = rh.match_head.fc.out_features if self.has_match else 1
        self.roi_aligned = bool(cfg.get("roi_aligned", False))
        self.roi_sampling_ratio = int(cfg.get("roi_sampling_ratio", 2))
        self.rpn_min_size = float(cfg.get("rpn_min_size", RPN_MIN_SIZE))
        self.rpn_rank_by_logit = bool(cfg.get("rpn_rank_by_logit", False))
        self.roi_level_rule = str(cfg.get("roi_level_rule", "torchvision"))
        if self.roi_level_rule not in ("torchvision", "detectron2"):
            raise ValueError(f"model.roi_level_rule {self.roi_level_rule!r}: expected torchvision or detectron2")
        self.det_min_size = float(cfg.get("det_min_size", DET_MIN_SIZE))

        # feature shapes and anchors for the fixed input size
        with torch.no_grad():
            dummy = torch.zeros(1, 3, self.height, self.width)
            feats = model.backbone(model.normalize(dummy))
            anchors = model.rpn.anchor_generator(ImageList(dummy, [(self.height, self.width)]), list(feats.values()))[0]
        self.level_names = list(feats.keys())
        self.num_anchors = model.rpn.head.cls_logits.out_channels
        counts = [int(f.shape[-2] * f.shape[-1] * self.num_anchors) for f in feats.values()]
        if self.num_proposals > sum(min(pre, c) for c in counts):
            raise ValueError(f"num_proposals={self.num_proposals} exceeds the {sum(min(pre, c) for c in counts)} RPN candidates")
        self.pre_nms = [min(pre, c) for c in counts]
        for name, k in (
            ("pre_nms_top_n", max(self.pre_nms)),
            ("num_proposals", self.num_proposals),
            ("max_detections", self.max_detections),
        ):
            if k >= 3840:
                raise ValueError(f"{name}={k}: TensorRT's TopK needs K < 3840")
        for i, a in enumerate(anchors.split(counts)):
            self.register_buffer(f"anchors_{i}", a.clone(), persistent=False)
        big = float(max(self.height, self.width) + 1)
        self.register_buffer("rpn_offsets", torch.cat([torch.full((k,), i * big) for i, k in enumerate(self.pre_nms)]), persistent=False)
        P, C = self.num_proposals, self.num_classes
        self.register_buffer("cls_offsets", (torch.arange(C, dtype=torch.float32) * big).repeat(P), persistent=False)
        self.register_buffer("cand_labels", (torch.arange(C, dtype=torch.int64) + 1).repeat(P), persistent=False)
        pool = rh.box_roi_pool
        self.roi_names = list(pool.featmap_names)
        self.roi_scales = []
        for n in self.roi_names:
            approx = feats[n].shape[-2] / self.height
            self.roi_scales.append(2.0 ** round(math.log2(approx)))
        self.k_min = int(round(-math.log2(self.roi_scales[0])))
        self.k_max = int(round(-math.log2(self.roi_scales[-1])))
        edge = 1 if self.roi_aligned else 0  # pack_levels(top=...): a replicated row above each level
        rows = [float(edge)]
        for n in self.roi_names[:-1]:
            rows.append(rows[-1] + feats[n].shape[-2] + 1 + edge)
        self.register_buffer("level_scales", torch.tensor(self.roi_scales, dtype=torch.float32), persistent=False)
        self.register_buffer("level_rows", torch.tensor(rows, dtype=torch.float32), persistent=False)

        self.box_decode = BoxDecode()
        # attribute names = ONNX scope names; df2infer_export.onnx_export renames "/nms_rpn/X" to "nms/rpn/X" etc.
        self.nms_rpn, self.nms_det, self.nms_top = GroupNMS(), GroupNMS(), TopKeep()
        self.postproc_levels, self.postproc_candidates, self.postproc_gather = RoILevels(), Candidates(), Gather()
        self.postproc_gate = HeadRows()
        self.mask_predictor = SubpixelMaskPredictor(rh.mask_predictor) if self.has_mask else None
        # our one-deconv landmark predictor runs sub-pixel (a quantizable Conv); other predictors as defined
        kp = rh.keypoint_predictor if self.has_landmarks else None
        one_deconv = isinstance(kp, LandmarkPredictor) and sum(isinstance(m, nn.ConvTranspose2d) for m in kp.upsample.modules()) == 1
        self.landmark_predictor = SubpixelLandmarkPredictor(kp) if one_deconv else None
        # glue code between the blocks, scoped so that it stays FP32 in the FP16 graph
        self.postproc_rpn, self.postproc_rois, self.postproc_det, self.postproc_out = Stage(), Stage(), Stage(), Stage()
        self.eval()

    def train(self, mode: bool = True):
        """Always eval: the deploy form is inference only (torch.onnx.export restores the mode it found)."""
        return super().train(False)

    # ---------------------------------------------------------------------------------------------
    def _rois(self, boxes):
        """boxes [B, R, 4] -> rois [B*R, 5] (batch index, x1, y1, x2, y2)."""
        bidx = torch.cumsum(torch.ones_like(boxes[:, 0, 0]), 0) - 1  # [B] 0..B-1, batch stays dynamic
        bidx = (bidx[:, None] + torch.zeros_like(boxes[:, :, 0])).reshape(-1, 1)
        return torch.cat([bidx, boxes.reshape(-1, 4)], 1)

    def _pool(self, packed, boxes, size: int):
        """MultiScaleRoIAlign on boxes [B, R, 4] -> [B*R, C, size, size], one RoiAlign on the packed map."""
        rois = self.postproc_rois(self._rois, boxes)
        rois = self.postproc_levels(rois, self.level_scales, self.level_rows, self.k_min, self.k_max, self.roi_level_rule)
        return torch.ops.torchvision.roi_align(packed, rois, 1.0, size, size, self.roi_sampling_ratio, self.roi_aligned)

    def proposals(self, objectness, deltas):
        """RPN outputs per level -> proposals [B, P, 4], valid [B, P]."""
        tops, dels, ancs = [], [], []
        for i, (o, d) in enumerate(zip(objectness, deltas)):
            a, h, w = self.num_anchors, o.shape[-2], o.shape[-1]
            o = o.permute(0, 2, 3, 1).reshape(-1, h * w * a)  # (h, w, a) order
            d = d.reshape(-1, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(-1, h * w * a, 4)
            top, idx = o.topk(self.pre_nms[i], dim=1)
            tops.append(top)
            dels.append(torch.gather(d, 1, idx[:, :, None].expand(-1, -1, 4)))
            ancs.append(getattr(self, f"anchors_{i}")[idx])
        # one decode over every level's candidates (elementwise, so the same numbers as per level)
        boxes = self.box_decode(torch.cat(dels, 1), torch.cat(ancs, 1), (1.0, 1.0, 1.0, 1.0), self.height, self.width)
        logits = torch.cat(tops, 1)
        valid = big_enough(boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1], self.rpn_min_size)
        if self.rpn_rank_by_logit:  # detectron2: NMS and top-k on the logits (their sigmoid ties at 1.0 above ~16.6)
            scores, floor = logits, LOGIT_FLOOR
        else:
            scores, floor = torch.sigmoid(logits), SCORE_FLOOR
        keep = self.nms_rpn(boxes, scores, self.rpn_offsets, valid, self.num_proposals, self.rpn_nms, 0.5 * floor, floor)
        _, idx, pvalid = self.nms_top(scores, keep, self.num_proposals, floor)
        return self.postproc_gather(boxes, idx), pvalid

    def _detections(self, cls_logits, box_deltas, props, pvalid):
        """box head outputs -> num_dets, boxes, scores, labels (int64, 0 = padding), valid float [B, N]."""
        N, P, C1 = self.max_detections, self.num_proposals, self.num_classes + 1
        box_deltas = box_deltas.reshape(-1, P, C1, 4)[:, :, 1:]  # drop background
        cand = self.box_decode(box_deltas, props[:, :, None, :], BOX_CODER_WEIGHTS, self.height, self.width)
        scores, cboxes, valid = self.postproc_candidates(cls_logits.reshape(-1, P, C1), cand, pvalid, self.score_thresh, self.det_min_size)
        keep = self.nms_det(cboxes, scores, self.cls_offsets, valid, N, self.nms_thresh, self.score_thresh)
        top, idx, dvalid = self.nms_top(scores, keep, N)
        fvalid = dvalid.to(top.dtype)
        det_scores = top * fvalid
        det_boxes = self.postproc_gather(cboxes, idx) * fvalid[:, :, None]
        det_labels = self.cand_labels[idx] * dvalid.to(torch.int64)  # [B, N], 0 = padding
        num_dets = dvalid.to(torch.int32).sum(1).to(torch.int32)
        return num_dets, det_boxes, det_scores, det_labels, fvalid

    def _outputs(self, mask_logits, head_labels, heat, emb, keep, labels, back):
        """Predicted-class mask probabilities; head rows put back in the N output rows (`back`, gated
        heads only); rows not kept (padding, beyond the gate) zeroed; contract shapes."""
        N, M, K, D = self.max_detections, self.mask_size, self.heatmap_size, self.embedding_dim
        lab = head_labels.reshape(-1)
        if mask_logits.shape[1] == 1:  # class-agnostic: the one channel for every class
            masks = torch.sigmoid(mask_logits)[:, 0]
        else:
            ch = torch.where(lab > 0, lab - 1, torch.zeros_like(lab))[:, None, None, None].expand(-1, 1, M, M)
            masks = torch.sigmoid(torch.gather(mask_logits, 1, ch))[:, 0]
        L = heat.shape[1]
        if back is None:  # static rows: reshape with the constant N keeps the output shapes static
            masks, heat, emb = masks.reshape(-1, N, M, M), heat.reshape(-1, N, L, K, K), emb.reshape(-1, N, D)
        else:
            B = keep.shape[0]
            masks = masks.reshape(B, -1, M, M).index_select(1, back)
            heat = heat.reshape(B, -1, L, K, K).index_select(1, back)
            emb = emb.reshape(B, -1, D).index_select(1, back)
        return (masks * keep[:, :, None, None], heat * keep[:, :, None, None, None], emb * keep[:, :, None], labels.to(torch.int32))

    def forward(self, images, min_head_score=None):
        """images float32 [B, 3, H, W]; min_head_score float32 [1] (gated heads only; default 0:
        every valid row) -> the contract's outputs."""
        m, rh = self.model, self.model.roi_heads
        feats = m.backbone(m.normalize(images))
        objectness, deltas = m.rpn.head(list(feats.values()))
        props, pvalid = self.postproc_rpn(self.proposals, objectness, deltas)  # [B, P, 4], [B, P]

        packed = pack_levels([feats[n] for n in self.roi_names], top=self.roi_aligned)
        pooled = self._pool(packed, props, rh.box_roi_pool.output_size[0])
        cls_logits, box_deltas = rh.box_predictor(rh.box_head(pooled))
        num_dets, det_boxes, det_scores, det_labels, fvalid = self.postproc_det(self._detections, cls_logits, box_deltas, props, pvalid)

        if self.gate_heads:
            if min_head_score is None:
                min_head_score = det_scores.new_zeros(1)
            head_boxes, head_labels, back, keep = self.postproc_gate(det_boxes, det_labels, det_scores, fvalid, min_head_score)
        else:
            head_boxes, head_labels, back, keep = det_boxes, det_labels, None, fvalid

        pooled: dict[int, torch.Tensor] = {}  # one RoiAlign per distinct output size
        for pool, on in (
            (rh.mask_roi_pool, self.has_mask),
            (rh.keypoint_roi_pool, self.has_landmarks),
            (rh.match_roi_pool, self.has_match),
        ):
            size = pool.output_size[0]
            if not on:
                continue
            if size not in pooled:
                pooled[size] = self._pool(packed, head_boxes, size)
        # a missing head: its placeholder rows ([B*R, 1, ...] zeros) from the head boxes, no head computed
        zero = head_boxes.reshape(-1, 4)[:, :1, None, None] * 0.0  # [B*R, 1, 1, 1]
        mlog = self.mask_predictor(rh.mask_head(pooled[rh.mask_roi_pool.output_size[0]])) if self.has_mask else zero - 1e4
        if not self.has_landmarks:
            heat = zero
        elif self.landmark_predictor is not None:
            heat = self.landmark_predictor(rh.keypoint_head(pooled[rh.keypoint_roi_pool.output_size[0]]), head_labels.reshape(-1))
        else:
            heat = rh.landmark_logits(pooled[rh.keypoint_roi_pool.output_size[0]], head_labels.reshape(-1))
        emb = rh.embed(pooled[rh.match_roi_pool.output_size[0]]) if self.has_match else zero[:, :, 0, 0]
        masks, heat, emb, labels = self.postproc_out(self._outputs, mlog, head_labels, heat, emb, keep, det_labels, back)
        return num_dets, det_boxes, det_scores, labels, masks, heat, emb

    @torch.no_grad()
    def predict(self, images) -> list[dict]:
        """Eager run, results in the eager model's format (list of dicts, padding removed)."""
        n, b, s, l, m, h, e = self(images)
        out = []
        for i in range(images.shape[0]):
            k = int(n[i])
            out.append(
                {
                    "boxes": b[i, :k],
                    "scores": s[i, :k],
                    "labels": l[i, :k].long(),
                    "masks": m[i, :k],
                    "landmark_logits": h[i, :k],
                    "embeddings": e[i, :k],
                }
            )
        return out


__all__ = ["DeployMatchRCNN", "BoxDecode", "GroupNMS", "HeadRows"]
