"""Backbones (images → pooled features (B, d)) and the discrepancy module.

``resnet18``: torchvision's ResNet-18 (He et al. 2016) without its classifier. torchvision
itself is not a dependency: its registry wheels are built against CUDA torch and do not import
with the CPU torch used here, so the same architecture is written out below with torchvision's
parameter names, which loads a torchvision state dict (``weights``: a local file, e.g.
``resnet18-f37072fd.pth``; its ``fc.*`` entries are ignored). ``small_cnn``: three
conv-BN-ReLU blocks for CPU runs."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class SmallCNN(nn.Module):
    """conv3×3(c→w) BN ReLU maxpool2, conv3×3(w→2w) BN ReLU maxpool2, conv3×3(2w→4w) BN ReLU,
    global average pool → (B, 4w). 30×30 inputs: 30 → 15 → 7 before pooling."""

    def __init__(self, in_channels: int = 1, width: int = 32):
        super().__init__()

        def block(i, o):
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

        self.body = nn.Sequential(
            *block(in_channels, width),
            nn.MaxPool2d(2),
            *block(width, 2 * width),
            nn.MaxPool2d(2),
            *block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_features = 4 * width

    def forward(self, x):
        return self.body(x)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """torchvision.models.resnet18 without ``fc`` (same modules, names and initialisation:
    Kaiming-normal convolutions, BN weight 1 / bias 0): images (B, C, H, W) → (B, 512)."""

    out_features = 512

    def __init__(self, in_channels: int = 3, weights: str | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if weights is not None:
            self.load_weights(weights)

    def load_weights(self, path) -> None:
        """A local state dict of torchvision's ResNet-18 (``fc.*`` and a DDP ``module.``
        prefix ignored); every trunk parameter must be in it, with its shape."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"module.weights={str(path)!r}: no such file (a local ResNet-18 state dict; "
                "nothing is downloaded — use null for random initialisation)"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        state = {k.removeprefix("module."): v for k, v in state.items()}
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"module.weights={str(path)!r} is not a ResNet-18 state dict: missing "
                f"{missing[:3]}{'…' if len(missing) > 3 else ''}, unexpected "
                f"{unexpected[:3]}{'…' if len(unexpected) > 3 else ''}"
            )

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


BACKBONES = ("small_cnn", "resnet18")


def build_backbone(
    name: str, in_channels: int, weights: str | None = None, width: int = 32
) -> nn.Module:
    if name == "resnet18":
        return ResNet18(in_channels, weights)
    if name == "small_cnn":
        if weights is not None:
            raise ValueError("module.weights is for backbone=resnet18 only")
        return SmallCNN(in_channels, width)
    raise ValueError(f"module.backbone must be one of {', '.join(BACKBONES)}. Found {name!r}")


class Discriminator(nn.Module):
    """The discrepancy module: features (B, d) → one logit per image, "is this the feature of an
    ordered image (the object task's input) rather than of a shuffled one (the jigsaw task's)?".
    Linear(d, h) ReLU Linear(h, h) ReLU Linear(h, 1)."""

    def __init__(self, in_features: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, z):
        return self.net(z).squeeze(-1)
