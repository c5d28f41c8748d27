"""Backbones turn one input into a feature map the CTM attends to: x -> (B, C, *spatial).

The model adds the positional embedding to that map and flattens its spatial dimensions into tokens.
Module and parameter names follow the reference implementation (SakanaAI/continuous-thought-machines),
so that its checkpoints load with a strict `load_state_dict`:

- `resnet{18,34,50,101,152}-{1,2,3,4}`: its ResNets, truncated after stage 1..4, with a 3x3 stride-1
  first convolution (not torchvision's 7x7: the reference narrows the receptive field on purpose);
  keys `conv1`, `bn1`, `layer{i}.{block}.conv1|bn1|conv2|bn2[|conv3|bn3][|downsample.0|1]`.
- `shallow-wide`: conv3x3/2 to 4096, GLU, BN, grouped conv3x3 to 4096, GLU, BN (2048 channels out).
- `parity_backbone`: an embedding of each sign, d_input channels.
- `none`: the input itself is the feature map.
- `mnist-conv` (the reference MNIST tutorial's) and `parity-embedding` (our parity task's).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import RESNET_BACKBONES

RESNET_STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 4, 36, 3)}
STAGE_PLANES = (64, 128, 256, 512)


def resnet_spec(name: str) -> tuple[int, int]:
    """ "resnet50-3" -> (50, 3): depth and how many stages are kept."""
    depth, stages = name.removeprefix("resnet").split("-")
    return int(depth), int(stages)


def backbone_channels(name: str, input_shape: tuple[int, ...], d_input: int) -> int:
    """Channels of the feature map `name` produces (the width kv_proj reads)."""
    if name in RESNET_BACKBONES:
        depth, stages = resnet_spec(name)
        return STAGE_PLANES[stages - 1] * (1 if depth in (18, 34) else Bottleneck.expansion)
    if name == "shallow-wide":
        return 2048
    if name == "none":
        return input_shape[0]
    return d_input  # mnist-conv, parity-embedding, parity_backbone


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(in_planes, planes * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = _downsample(in_planes, planes * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


def _downsample(in_planes: int, out_planes: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes))


class TruncatedResNet(nn.Module):
    """The reference's ResNet: conv3x3 (stride 1), BN, ReLU, maxpool3x3/2, then the first `stages` stages.

    Stage 1 keeps the resolution, each later stage halves it. Input is always 3 channels (the CTM puts
    a 1x1 convolution, `initial_rgb`, in front).
    """

    def __init__(self, depth: int, stages: int):
        super().__init__()
        block = BasicBlock if depth in (18, 34) else Bottleneck
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_planes = 64
        for stage in range(stages):
            planes, blocks = STAGE_PLANES[stage], RESNET_STAGE_BLOCKS[depth][stage]
            layers = []
            for i in range(blocks):
                layers.append(block(in_planes, planes, stride=2 if stage > 0 and i == 0 else 1))
                in_planes = planes * block.expansion
            self.add_module(f"layer{stage + 1}", nn.Sequential(*layers))
        self.stages = stages

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        for stage in range(1, self.stages + 1):
            x = getattr(self, f"layer{stage}")(x)
        return x


class ShallowWide(nn.Module):
    """The reference's wide two-convolution backbone (2048 channels out, half the resolution)."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, 4096, 3, 2, 1),
            nn.GLU(dim=1),
            nn.BatchNorm2d(2048),
            nn.Conv2d(2048, 4096, 3, 1, 1, groups=32),
            nn.GLU(dim=1),
            nn.BatchNorm2d(2048),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class MnistConvBackbone(nn.Sequential):
    """Two conv3x3 + BatchNorm + ReLU + maxpool2 blocks (the reference MNIST tutorial's backbone).

    (B, 1, 28, 28) -> (B, C, 7, 7).
    """

    def __init__(self, in_channels: int, channels: int):
        super().__init__(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
        )


class ReferenceParityBackbone(nn.Module):
    """The reference's parity backbone: +1 -> embedding 1, anything else -> embedding 0. (B, L) -> (B, C, L)."""

    def __init__(self, channels: int):
        super().__init__()
        self.embedding = nn.Embedding(2, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.embedding((x == 1).long()).transpose(1, 2)


class ParityBackbone(nn.Module):
    """Our parity task's: a sign embedding plus a learned position embedding. (B, L) -> (B, C, L)."""

    def __init__(self, length: int, channels: int):
        super().__init__()
        self.embedding = nn.Embedding(2, channels)
        self.positional_embedding = nn.Parameter(torch.randn(length, channels) * 0.02)

    def forward(self, x: Tensor) -> Tensor:
        return (self.embedding((x > 0).long()) + self.positional_embedding).transpose(1, 2)


def build_backbone(name: str, input_shape: tuple[int, ...], channels: int) -> nn.Module:
    """The backbone `name` for inputs of `input_shape`; `channels` is d_input (where the width is free)."""
    if name in RESNET_BACKBONES:
        return TruncatedResNet(*resnet_spec(name))
    if name == "shallow-wide":
        return ShallowWide(input_shape[0])
    if name == "mnist-conv":
        return MnistConvBackbone(input_shape[0], channels)
    if name == "parity-embedding":
        return ParityBackbone(input_shape[0], channels)
    if name == "parity_backbone":
        return ReferenceParityBackbone(channels)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown backbone {name!r}")


def build_initial_rgb(name: str, input_shape: tuple[int, ...]) -> nn.Module:
    """The reference puts a 1x1 convolution to 3 channels in front of every ResNet (`initial_rgb`)."""
    if name in RESNET_BACKBONES:
        return nn.Conv2d(input_shape[0], 3, 1, 1)
    return nn.Identity()
