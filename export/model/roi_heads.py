"""Perception + matching heads on RoIs (box, mask, landmark, matching), torchvision RoIHeads based.

Training: proposals are sampled (torchvision `select_training_samples`), the box head gets all
sampled RoIs, the mask/landmark/matching heads get up to `max_pos_per_image` positives per
image; the matching head also gets every ground-truth box. Inference: box head -> decoding
(BoxCoder 10,10,5,5) -> per-class NMS -> top `detections_per_img`, then the other heads run on
the detected boxes.

A model built from an imported checkpoint may lack heads (config `heads`, a subset of mask,
landmark, match): the missing ones are None here, and the deploy graph gives their outputs as the
contract's placeholders (df2infer.contract, `heads`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss, keypointrcnn_loss, maskrcnn_loss
from torchvision.ops import MultiScaleRoIAlign

from .box_head import BOX_CODER_WEIGHTS, build_box_head
from .landmark_head import build_landmark_head
from .mask_head import build_mask_head
from .matching import MatchingHead, Similarity


def roi_pool(featmap_names, size: int) -> MultiScaleRoIAlign:
    return MultiScaleRoIAlign(featmap_names=list(featmap_names), output_size=size, sampling_ratio=2)


class MatchRoIHeads(RoIHeads):
    def __init__(self, cfg: dict, in_channels: int, featmap_names):
        box_head, box_predictor = build_box_head(in_channels, cfg["box_pool"], cfg["box_fc"], kind=cfg.get("box_head", "mlp"))
        super().__init__(
            roi_pool(featmap_names, cfg["box_pool"]),
            box_head,
            box_predictor,
            0.5,
            0.5,
            cfg["box_batch_size_per_image"],
            cfg["box_positive_fraction"],
            BOX_CODER_WEIGHTS,
            cfg["box_score_thresh"],
            cfg["box_nms_thresh"],
            cfg["max_detections"],
        )
        # attribute names as torchvision's Mask/Keypoint R-CNN (imports), set after super().__init__
        heads = set(cfg.get("heads", ("mask", "landmark", "match")))
        self.mask_roi_pool = roi_pool(featmap_names, cfg["mask_pool"])
        self.mask_head, self.mask_predictor = None, None
        if "mask" in heads:
            self.mask_head, self.mask_predictor = build_mask_head(
                in_channels, cfg["mask_channels"], cfg["mask_convs"], 1 if cfg.get("class_agnostic_mask") else 13, cfg.get("head_norm")
            )
        self.keypoint_roi_pool = roi_pool(featmap_names, cfg["landmark_pool"])
        self.keypoint_head, self.keypoint_predictor = None, None
        if "landmark" in heads:
            self.keypoint_head, self.keypoint_predictor = build_landmark_head(
                in_channels,
                cfg["landmark_channels"],
                cfg["landmark_convs"],
                cfg["landmark_deconvs"],
                cfg.get("landmark_predictor", "slots"),
            )
        self.match_roi_pool = roi_pool(featmap_names, cfg["match_pool"])
        self.match_head, self.similarity = None, None
        if "match" in heads:
            self.match_head = MatchingHead(in_channels, cfg["match_channels"], cfg["embedding_dim"])
            self.similarity = Similarity(cfg["embedding_dim"])
        self.max_pos_per_image = cfg["max_pos_per_image"]
        self._same_pool = cfg["mask_pool"] == cfg["landmark_pool"] == cfg["match_pool"]

    # plain calls on pooled features (what the deploy graph uses)
    def mask_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.mask_predictor(self.mask_head(pooled))

    def landmark_logits(self, pooled: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.keypoint_predictor(self.keypoint_head(pooled), labels)

    def embed(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.match_head(pooled)

    def has_mask(self) -> bool:  # torchvision's RoIHeads.forward is not used; keep its checks quiet
        return True

    def _pool3(self, features, boxes, image_shapes):
        m = self.mask_roi_pool(features, boxes, image_shapes)
        if self._same_pool:
            return m, m, m
        return m, self.keypoint_roi_pool(features, boxes, image_shapes), self.match_roi_pool(features, boxes, image_shapes)

    def forward(self, features, proposals, image_shapes, targets=None):
        if self.training:
            return self._train_forward(features, proposals, image_shapes, targets)
        return self._infer_forward(features, proposals, image_shapes)

    def _train_forward(self, features, proposals, image_shapes, targets):
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        x = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(x)
        loss_cls, loss_box = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        losses = {"loss_classifier": loss_cls, "loss_box_reg": loss_box}

        pos_boxes, pos_idx = [], []
        for props, lab, midx in zip(proposals, labels, matched_idxs):
            pos = torch.where(lab > 0)[0]
            if pos.numel() > self.max_pos_per_image:
                pos = pos[torch.randperm(pos.numel(), device=pos.device)[: self.max_pos_per_image]]
            pos_boxes.append(props[pos])
            pos_idx.append(midx[pos])
        n_pos = sum(int(p.shape[0]) for p in pos_boxes)
        zero = class_logits.sum() * 0
        if n_pos == 0:
            losses.update(loss_mask=zero, loss_landmark=zero)
        else:
            mfeat, kfeat, _ = self._pool3(features, pos_boxes, image_shapes)
            gt_labels = [t["labels"] for t in targets]
            losses["loss_mask"] = maskrcnn_loss(
                self.mask_logits(mfeat), pos_boxes, [t["masks"] for t in targets], [g - 1 for g in gt_labels], pos_idx
            )
            pos_labels = torch.cat([g[i] for g, i in zip(gt_labels, pos_idx)])
            slots = self.keypoint_predictor.slots
            gt_kps = []
            for t in targets:  # each item's own category's landmarks: [n, 39, 3], v = 0 in padding
                k = torch.cat([t["keypoints"], t["keypoints"].new_zeros(t["keypoints"].shape[0], 1, 3)], 1)
                gt_kps.append(torch.gather(k, 1, slots[t["labels"]][:, :, None].expand(-1, -1, 3)))
            losses["loss_landmark"] = keypointrcnn_loss(self.landmark_logits(kfeat, pos_labels), pos_boxes, gt_kps, pos_idx)
        losses["loss_match"] = self._match_loss(features, image_shapes, targets, pos_boxes, pos_idx, zero)
        return [], losses

    def _match_loss(self, features, image_shapes, targets, pos_boxes, pos_idx, zero):
        """Pairwise loss between every consumer RoI and every shop RoI in the batch.

        RoIs = ground-truth boxes plus the sampled positive proposals (labelled with their matched
        item). A pair is positive when pair_id and style are equal and style > 0. Positives and
        negatives each contribute half of the loss.
        """
        boxes, pid, sty, src = [], [], [], []
        for t, pb, pi in zip(targets, pos_boxes, pos_idx):
            idx = torch.cat([torch.arange(t["boxes"].shape[0], device=pi.device), pi])
            boxes.append(torch.cat([t["boxes"], pb]))
            pid.append(t["pair_id"].reshape(1).expand(idx.numel()))
            src.append(t["source"].reshape(1).expand(idx.numel()))
            sty.append(t["style"][idx])
        pid, sty, src = torch.cat(pid), torch.cat(sty), torch.cat(src)
        user, shop = src == 1, src == 0
        if not user.any() or not shop.any():
            return zero
        emb = self.embed(self.match_roi_pool(features, boxes, image_shapes))
        q, g = emb[user], emb[shop]
        pos = (pid[user][:, None] == pid[shop][None]) & (sty[user][:, None] == sty[shop][None]) & (sty[user][:, None] > 0)
        logp = F.log_softmax(self.similarity(q[:, None], g[None]), -1)
        loss_neg = -logp[..., 0][~pos].mean() if (~pos).any() else zero
        loss_pos = -logp[..., 1][pos].mean() if pos.any() else zero
        return 0.5 * (loss_pos + loss_neg)

    @torch.no_grad()
    def _infer_forward(self, features, proposals, image_shapes):
        x = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(x)
        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        result = [{"boxes": b, "scores": s, "labels": l} for b, s, l in zip(boxes, scores, labels)]
        n = [b.shape[0] for b in boxes]
        if sum(n) == 0:
            for r in result:
                r.update(
                    masks=r["boxes"].new_zeros(0, 1, 1) if self.mask_head is not None else None,
                    landmark_logits=r["boxes"].new_zeros(0, 39, 1, 1) if self.keypoint_head is not None else None,
                    embeddings=r["boxes"].new_zeros(0, self.match_head.fc.out_features) if self.match_head is not None else None,
                )
            return result, {}
        mfeat, kfeat, efeat = self._pool3(features, boxes, image_shapes)
        lab = torch.cat(labels)
        none: list = [None] * len(n)
        masks, heat, emb = none, none, none
        if self.mask_head is not None:
            m = self.mask_logits(mfeat)
            ch = lab - 1 if m.shape[1] > 1 else torch.zeros_like(lab)  # class-agnostic: the one channel
            masks = m[torch.arange(m.shape[0], device=lab.device), ch].sigmoid().split(n)
        if self.keypoint_head is not None:
            heat = self.landmark_logits(kfeat, lab).split(n)
        if self.match_head is not None:
            emb = self.embed(efeat).split(n)
        for r, m, h, e in zip(result, masks, heat, emb):
            r.update(masks=m, landmark_logits=h, embeddings=e)
        return result, {}
