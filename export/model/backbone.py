"""Feature network: ResNet + FPN.

`resnet18/34/50/101` are torchvision's ResNets wrapped by `resnet_fpn_backbone` (same parameter names
as torchvision's Mask R-CNN, so its state dicts import). `small` is a narrow ResNet of BasicBlocks
for training from scratch on a CPU. Both return an OrderedDict of FPN levels '0'..'k' plus 'pool'
(LastLevelMaxPool), each with `fpn_channels` channels; level '0' has stride 2**(first returned layer+1).
`msra_resnet50/101` is the MSRA (Caffe2) ResNet that detectron2's ImageNet weights use (STRIDE_IN_1X1):
torchvision's bottleneck with the stride of each stage's first block moved from the 3x3 conv to
the first 1x1 conv (same parameters and names, a different network). `fpn_norm: bn` gives
torchvision's v2 FPN (conv + BatchNorm in every lateral and output block).
"""

from __future__ import annotations

from functools import partial

from torch import nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.resnet import BasicBlock
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool


def norm_layer(kind: str):
    if kind == "bn":
        return nn.BatchNorm2d
    if kind == "frozen_bn":
        return FrozenBatchNorm2d
    if kind == "gn":
        return partial(nn.GroupNorm, 8)
    raise ValueError(f"unknown norm {kind!r}")


class SmallResNet(nn.Module):
    """Narrow ResNet: stem (two 3x3 stride-2 convs, stride 4) then four BasicBlock stages.

    layer1 = C2 (stride 4), layer2 = C3 (8), layer3 = C4 (16), layer4 = C5 (32).
    """

    def __init__(self, widths=(32, 64, 96, 128), blocks=(1, 1, 1, 1), norm: str = "bn"):
        super().__init__()
        nl = norm_layer(norm)
        w0 = widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(3, w0 // 2, 3, 2, 1, bias=False),
            nl(w0 // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(w0 // 2, w0, 3, 2, 1, bias=False),
            nl(w0),
            nn.ReLU(inplace=True),
        )
        inp = w0
        for i, (w, n) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            layers = []
            for j in range(n):
                s = stride if j == 0 else 1
                down = None
                if s != 1 or inp != w:
                    down = nn.Sequential(nn.Conv2d(inp, w, 1, s, bias=False), nl(w))
                layers.append(BasicBlock(inp, w, s, down, norm_layer=nl))
                inp = w
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def stride_in_1x1(net: nn.Module) -> nn.Module:
    """torchvision ResNet -> MSRA bottlenecks: in every block that downsamples, conv1 (1x1) takes the
    stride and conv2 (3x3) runs at stride 1 (detectron2 RESNETS.STRIDE_IN_1X1 = True)."""
    for name in ("layer1", "layer2", "layer3", "layer4"):
        block = getattr(net, name)[0]
        s = block.conv2.stride
        if s != (1, 1):
            block.conv1.stride, block.conv2.stride = s, (1, 1)
    return net


def build_backbone(cfg: dict) -> BackboneWithFPN:
    returned = list(cfg["returned_layers"])
    if cfg["backbone"] == "small":
        body = SmallResNet(cfg["backbone_widths"], cfg["backbone_blocks"], cfg["norm"])
        return_layers = {f"layer{k}": str(i) for i, k in enumerate(returned)}
        in_list = [cfg["backbone_widths"][k - 1] for k in returned]
        return BackboneWithFPN(body, return_layers, in_list, cfg["fpn_channels"], extra_blocks=LastLevelMaxPool())
    from torchvision.models import resnet

    arch = cfg["backbone"].removeprefix("msra_")
    net = getattr(resnet, arch)(weights=None, norm_layer=norm_layer(cfg["norm"]))
    if cfg["backbone"].startswith("msra_"):
        stride_in_1x1(net)
    stage1 = 256 if arch in ("resnet50", "resnet101") else 64
    in_list = [stage1 * 2 ** (k - 1) for k in returned]
    return_layers = {f"layer{k}": str(i) for i, k in enumerate(returned)}
    fpn_norm = norm_layer(cfg["fpn_norm"]) if cfg.get("fpn_norm") else None
    return BackboneWithFPN(net, return_layers, in_list, cfg["fpn_channels"], extra_blocks=LastLevelMaxPool(), norm_layer=fpn_norm)
