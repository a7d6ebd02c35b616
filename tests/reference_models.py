"""Hand-written PyTorch reference modules for every architecture in the seed posts.

These are the ground truth that the YAML zoo specs must reproduce: exact parameter
counts, per-layer output shapes and (where the original code is a named
``nn.Module``) the same attribute names, so that ``state_dict`` keys line up.

Seed files live in ``/work/shared/seeds`` (Chinese blog posts, see its README):

* ``000``: small ResNet / VGG-BN / Inception-v1 on CIFAR-10, built from
  yunjey/pytorch-tutorial ``deep_residual_network/main.py``, torchvision ``vgg.py``
  and antspy/inception_v1.pytorch ``inception_v1.py`` with reduced channels.
* ``001``: LeNet-5 and an Inception (v2/v3 style) block with ``BasicConv2d``.
* ``002``: d2l VGG-11 (``conv_arch``) and the 1/4-width VGG for Fashion-MNIST.
* ``003``: GoogLeNet for CIFAR-10 (3x3/1 stem, no maxpool1/maxpool2, BN, aux heads).
* ``004``: d2l LeNet / AlexNet / VGG / ResNet-18 on Fashion-MNIST, a simplified
  AlexNet and a small ``Net`` for 28x28 input.

Plus two classic CIFAR families that the zoo also needs: He et al. (2016) ResNet-20/32/56
with the parameter-free option-A shortcut, and a torchvision-style ResNet-18 for CIFAR.

``REFERENCE_MODELS`` maps a name to ``(builder, input_shape, expected_params)``;
``OUTPUT_SHAPES`` gives the per-sample output shape of each entry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------
# Seed 001: LeNet-5 (no activations at all, max pooling)
# ---------------------------------------------------------------------------


class LeNet5(nn.Module):
    """LeNet-5 exactly as written in seed 001 (``class LeNet``), input 1x32x32.

    Quirk reproduced from the post: there is *no* activation anywhere (not even
    between the Linear layers) and the subsampling layers are ``MaxPool2d(2, 2)``.
    Attribute names (``layer1.conv1``, ``layer1.pool1``, ``layer2.conv2``, ...,
    ``layer3.fc3``) match the post, so ``state_dict`` keys match.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        layer1 = nn.Sequential()
        layer1.add_module("conv1", nn.Conv2d(1, 6, 5))
        layer1.add_module("pool1", nn.MaxPool2d(2, 2))
        self.layer1 = layer1

        layer2 = nn.Sequential()
        layer2.add_module("conv2", nn.Conv2d(6, 16, 5))
        layer2.add_module("pool2", nn.MaxPool2d(2, 2))
        self.layer2 = layer2

        layer3 = nn.Sequential()
        layer3.add_module("fc1", nn.Linear(16 * 5 * 5, 120))
        layer3.add_module("fc2", nn.Linear(120, 84))
        layer3.add_module("fc3", nn.Linear(84, num_classes))
        self.layer3 = layer3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(x)
        x = self.layer2(x)
        x = x.view(x.size(0), -1)
        return self.layer3(x)


def lenet5(num_classes: int = 10) -> LeNet5:
    """Seed 001 LeNet-5 (61,706 params at 10 classes)."""
    return LeNet5(num_classes)


# ---------------------------------------------------------------------------
# Seed 004: d2l LeNet / AlexNet / simplified AlexNet / Net for 28x28
# ---------------------------------------------------------------------------


def lenet_d2l() -> nn.Sequential:
    """d2l LeNet from seed 004 section 3.1.1, input 1x28x28.

    Sigmoid activations, ``AvgPool2d(2, 2)``, first conv has ``padding=2`` so the
    28x28 Fashion-MNIST image gives the classic 16x5x5 map before the Linear layers.
    A plain ``nn.Sequential`` (keys ``0.weight``, ``3.weight``, ``7.weight`` ...).
    """
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, 10),
    )  # fmt: skip


def alexnet_d2l() -> nn.Sequential:
    """d2l AlexNet from seed 004 section 3.1.2, input 1x224x224, 10 classes.

    96/256/384/384/256 channels, first conv 11x11 stride 4 *padding 1*, three
    ``MaxPool2d(3, 2)``; classifier 6400-4096-4096-10 with ``Dropout(0.5)`` after each
    hidden ReLU.
    """
    return nn.Sequential(
        nn.Conv2d(1, 96, kernel_size=11, stride=4, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Flatten(),
        nn.Linear(6400, 4096), nn.ReLU(),
        nn.Dropout(p=0.5),
        nn.Linear(4096, 4096), nn.ReLU(),
        nn.Dropout(p=0.5),
        nn.Linear(4096, 10),
    )  # fmt: skip


def alexnet_small() -> nn.Sequential:
    """Simplified AlexNet of seed 004 section 3.2.1 (the ``net`` at line 629).

    Four convs (64/128/256/256, first one 7x7 stride 2 padding 3), three
    ``MaxPool2d(3, 2)``, then 256*13*13 -> 1024 -> 10 with one ``Dropout(0.5)``.
    The ``256 * 13 * 13`` flatten size only works for a 1x224x224 input (the post
    trains on Fashion-MNIST resized to 224 like the original AlexNet).
    """
    return nn.Sequential(
        nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 128, kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(128, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Flatten(),
        nn.Linear(256 * 13 * 13, 1024), nn.ReLU(),
        nn.Dropout(p=0.5),
        nn.Linear(1024, 10),
    )  # fmt: skip


class FMNISTNet(nn.Module):
    """``class Net`` of seed 004 section 3.2.2: a small CNN for raw 1x28x28 input.

    conv3x3(32, pad 1) - ReLU - maxpool 2 - conv3x3(64, pad 1) - ReLU - maxpool 2 -
    flatten - Linear(3136, 1024) - ReLU - Dropout(0.5) - Linear(1024, 10).
    Attribute names as in the post.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64 * 7 * 7, 1024)
        self.relu3 = nn.ReLU()
        self.dropout = nn.Dropout(p=0.5)
        self.fc2 = nn.Linear(1024, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.flatten(x)
        x = self.dropout(self.relu3(self.fc1(x)))
        return self.fc2(x)


def fmnist_net() -> FMNISTNet:
    """Seed 004 ``Net`` (3,241,354 params)."""
    return FMNISTNet()


# ---------------------------------------------------------------------------
# Seeds 002 / 004: d2l VGG-11 with conv_arch (and the 1/ratio-width variant)
# ---------------------------------------------------------------------------

VGG11_CONV_ARCH: tuple[tuple[int, int], ...] = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))


def vgg_block(num_convs: int, in_channels: int, out_channels: int) -> nn.Sequential:
    """d2l ``vgg_block``: ``num_convs`` x (conv3x3 pad 1 + ReLU) then ``MaxPool2d(2, 2)``."""
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
        layers.append(nn.ReLU())
        in_channels = out_channels
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


def vgg_d2l(conv_arch: Sequence[tuple[int, int]]) -> nn.Sequential:
    """d2l ``vgg(conv_arch)``: VGG blocks, Flatten, 3-layer classifier for 1x224x224.

    The classifier width stays 4096 regardless of ``conv_arch`` (only its input,
    ``out_channels * 7 * 7``, follows the last block), exactly as in the post.
    """
    conv_blks: list[nn.Module] = []
    in_channels = 1
    out_channels = in_channels
    for num_convs, out_channels in conv_arch:
        conv_blks.append(vgg_block(num_convs, in_channels, out_channels))
        in_channels = out_channels
    return nn.Sequential(
        *conv_blks, nn.Flatten(),
        nn.Linear(out_channels * 7 * 7, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 10),
    )  # fmt: skip


def vgg11_d2l(ratio: int = 1) -> nn.Sequential:
    """VGG-11 of seed 002 (and seed 004 section 3.1.3), input 1x224x224, 10 classes.

    ``ratio=1`` is the full VGG-11 (``conv_arch``); ``ratio=4`` is the narrow net the
    posts actually train on Fashion-MNIST:
    ``small_conv_arch = [(pair[0], pair[1] // ratio) for pair in conv_arch]``
    i.e. 16/32/64/64/128/128/128/128 channels, still with the 4096-wide classifier.
    """
    arch = [(n, c // ratio) for n, c in VGG11_CONV_ARCH]
    return vgg_d2l(arch)


# ---------------------------------------------------------------------------
# Seed 004: d2l ResNet-18 (Residual with use_1x1conv)
# ---------------------------------------------------------------------------


class Residual(nn.Module):
    """d2l ``Residual`` block (seed 004 section 3.1.4).

    conv3x3(stride) - BN - ReLU - conv3x3 - BN, plus optional 1x1 projection
    ``conv3`` (with bias, no BN) on the shortcut, then ReLU. All convs have bias.
    Attribute order (conv1, conv2, conv3, bn1, bn2) is kept for ``state_dict`` order.
    """

    def __init__(
        self, input_channels: int, num_channels: int, use_1x1conv: bool = False, strides: int = 1
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            input_channels, num_channels, kernel_size=3, padding=1, stride=strides
        )
        self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        self.conv3: nn.Conv2d | None
        if use_1x1conv:
            self.conv3 = nn.Conv2d(input_channels, num_channels, kernel_size=1, stride=strides)
        else:
            self.conv3 = None
        self.bn1 = nn.BatchNorm2d(num_channels)
        self.bn2 = nn.BatchNorm2d(num_channels)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3 is not None:
            X = self.conv3(X)
        Y = Y + X
        return F.relu(Y)


def resnet_block(
    input_channels: int, num_channels: int, num_residuals: int, first_block: bool = False
) -> list[nn.Module]:
    """d2l ``resnet_block``: first Residual of a non-first stage downsamples with 1x1 conv."""
    blk: list[nn.Module] = []
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blk.append(Residual(input_channels, num_channels, use_1x1conv=True, strides=2))
        else:
            blk.append(Residual(num_channels, num_channels))
    return blk


def resnet18_d2l() -> nn.Sequential:
    """d2l ResNet-18 of seed 004, input 1x224x224, 10 classes.

    b1 = conv7x7/2 (64, pad 3) - BN - ReLU - maxpool 3/2 pad 1; b2..b5 = 2 Residuals
    each at 64/128/256/512; AdaptiveAvgPool2d(1) - Flatten - Linear(512, 10).
    """
    b1 = nn.Sequential(
        nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3),
        nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )  # fmt: skip
    b2 = nn.Sequential(*resnet_block(64, 64, 2, first_block=True))
    b3 = nn.Sequential(*resnet_block(64, 128, 2))
    b4 = nn.Sequential(*resnet_block(128, 256, 2))
    b5 = nn.Sequential(*resnet_block(256, 512, 2))
    return nn.Sequential(
        b1, b2, b3, b4, b5, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(512, 10)
    )


# ---------------------------------------------------------------------------
# Seed 000 (1): yunjey pytorch-tutorial deep residual network
# ---------------------------------------------------------------------------


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """yunjey ``conv3x3``: 3x3 conv, padding 1, **no bias**."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class ResidualBlock(nn.Module):
    """yunjey ``ResidualBlock`` (post-activation basic block)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        return self.relu(out)


class YunjeyResNet(nn.Module):
    """ResNet of seed 000, i.e. yunjey ``ResNet(ResidualBlock, [2, 2, 2])``, 3x32x32.

    Stem conv3x3(3, 16) - BN - ReLU; stages 16/32/64 with 2 blocks each (stride 1/2/2);
    ``AvgPool2d(8)``; ``Linear(64, 10)``. Quirk: the downsample shortcut is a
    **3x3** conv (``conv3x3(in, out, stride)``, no bias) + BN, not a 1x1 projection;
    that is what gives exactly 195,738 params.
    """

    def __init__(
        self,
        block: type[ResidualBlock] = ResidualBlock,
        layers: Sequence[int] = (2, 2, 2),
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.in_channels = 16
        self.conv = conv3x3(3, 16)
        self.bn = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self.make_layer(block, 16, layers[0])
        self.layer2 = self.make_layer(block, 32, layers[1], 2)
        self.layer3 = self.make_layer(block, 64, layers[2], 2)
        self.avg_pool = nn.AvgPool2d(8)
        self.fc = nn.Linear(64, num_classes)

    def make_layer(
        self, block: type[ResidualBlock], out_channels: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if (stride != 1) or (self.in_channels != out_channels):
            downsample = nn.Sequential(
                conv3x3(self.in_channels, out_channels, stride=stride),
                nn.BatchNorm2d(out_channels),
            )
        layers = [block(self.in_channels, out_channels, stride, downsample)]
        self.in_channels = out_channels
        for _ in range(1, blocks):
            layers.append(block(out_channels, out_channels))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn(self.conv(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = self.avg_pool(out)
        out = out.view(out.size(0), -1)
        return self.fc(out)


def resnet_cifar(num_classes: int = 10) -> YunjeyResNet:
    """Seed 000 ResNet (exactly 195,738 params)."""
    return YunjeyResNet(ResidualBlock, (2, 2, 2), num_classes)


# ---------------------------------------------------------------------------
# Seed 000 (2): torchvision VGG with a tiny cfg
# ---------------------------------------------------------------------------

VGG_CIFAR_CFG: tuple[int | str, ...] = (
    16, 16, "M", 32, 32, "M", 32, 32, "M", 64, 64, "M", 64, 64, "M",
)  # fmt: skip


def make_layers(cfg: Sequence[int | str], batch_norm: bool = False) -> nn.Sequential:
    """torchvision ``vgg.make_layers``: conv3x3 pad 1 (bias) [+ BN] + ReLU, 'M' = maxpool 2/2."""
    layers: list[nn.Module] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        else:
            assert isinstance(v, int)
            conv2d = nn.Conv2d(in_channels, v, kernel_size=3, padding=1)
            if batch_norm:
                layers += [conv2d, nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            else:
                layers += [conv2d, nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """torchvision ``VGG`` as modified in seed 000, input 3x32x32.

    After five 2x2 maxpools the 32x32 image is 1x1; ``AdaptiveAvgPool2d((3, 3))``
    replicates it to 3x3, so the classifier input is 64*3*3 = 576 (written
    ``9 * 8 * 8`` in the post). Classifier 576-64-64-10 with the Dropouts commented out.
    """

    def __init__(
        self, features: nn.Module, num_classes: int = 10, init_weights: bool = True
    ) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((3, 3))
        self.classifier = nn.Sequential(
            nn.Linear(9 * 8 * 8, 64),
            nn.ReLU(True),
            # nn.Dropout(),
            nn.Linear(64, 64),
            nn.ReLU(True),
            # nn.Dropout(),
            nn.Linear(64, num_classes),
        )
        if init_weights:
            self._initialize_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)

    def _initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)


def vgg_bn_cifar(batch_norm: bool = True, num_classes: int = 10) -> VGG:
    """Seed 000 ``vgg_bn``: 207,002 params with BN, 206,170 with ``batch_norm=False``."""
    return VGG(make_layers(VGG_CIFAR_CFG, batch_norm=batch_norm), num_classes=num_classes)


# ---------------------------------------------------------------------------
# Seed 000 (4): antspy inception_v1.pytorch, shrunk
# ---------------------------------------------------------------------------


class Inception_base(nn.Module):  # name kept from the original code
    """antspy ``Inception_base(depth_dim, input_size, config)``.

    ``config = [[c1], [c3_reduce, c3], [c5_reduce, c5], [pool_k, pool_proj]]``; every
    conv has a bias and is followed by ``F.relu`` (no BN); the pool branch is
    ``MaxPool2d(pool_k, stride=1, padding=1)`` then a 1x1 conv. Output is the
    concat (1x1, 3x3, 5x5, pool) along ``depth_dim``.
    """

    def __init__(self, depth_dim: int, input_size: int, config: Sequence[Sequence[int]]) -> None:
        super().__init__()
        self.depth_dim = depth_dim
        self.conv1 = nn.Conv2d(
            input_size, out_channels=config[0][0], kernel_size=1, stride=1, padding=0
        )
        self.conv3_1 = nn.Conv2d(
            input_size, out_channels=config[1][0], kernel_size=1, stride=1, padding=0
        )
        self.conv3_3 = nn.Conv2d(config[1][0], config[1][1], kernel_size=3, stride=1, padding=1)
        self.conv5_1 = nn.Conv2d(
            input_size, out_channels=config[2][0], kernel_size=1, stride=1, padding=0
        )
        self.conv5_5 = nn.Conv2d(config[2][0], config[2][1], kernel_size=5, stride=1, padding=2)
        self.max_pool_1 = nn.MaxPool2d(kernel_size=config[3][0], stride=1, padding=1)
        self.conv_max_1 = nn.Conv2d(
            input_size, out_channels=config[3][1], kernel_size=1, stride=1, padding=0
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        output1 = F.relu(self.conv1(input))
        output2 = F.relu(self.conv3_3(F.relu(self.conv3_1(input))))
        output3 = F.relu(self.conv5_5(F.relu(self.conv5_1(input))))
        output4 = F.relu(self.conv_max_1(self.max_pool_1(input)))
        return torch.cat([output1, output2, output3, output4], dim=self.depth_dim)


class Inception_v1(nn.Module):  # name kept from the original code
    """Seed 000 ``Inception_v1`` for CIFAR-10 (3x32x32), 107,596 params.

    The post keeps only conv1 (yunjey ``conv3x3(3, 6)``, no bias), ``max_pool1``
    (3/2 pad 1), ``lrn1`` (the LRN replaced by ``BatchNorm2d(6)``), inception 3a/3b,
    ``max_pool_inc3`` (3/2 pad 0), inception 5a/5b (4a-4e, conv2/conv3/lrn3/max_pool3
    dropped), ``avg_pool5`` (3/2 pad 0), ``Dropout(0.4)`` and ``Linear(120*9, 10)``.
    Forward follows the original: ``lrn1(max_pool1(relu(conv1(x))))``.
    Spatial: 32 -> 16 (max_pool1) -> 7 (max_pool_inc3) -> 3 (avg_pool5).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        # conv2d0
        self.conv1 = conv3x3(3, 6)
        self.max_pool1 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.lrn1 = nn.BatchNorm2d(6)
        self.inception_3a = Inception_base(1, 6, [[16], [16, 32], [8, 16], [3, 16]])  # -> 80
        self.inception_3b = Inception_base(1, 80, [[40], [32, 48], [12, 16], [3, 16]])  # -> 120
        self.max_pool_inc3 = nn.MaxPool2d(kernel_size=3, stride=2, padding=0)
        self.inception_5a = Inception_base(1, 120, [[40], [32, 48], [12, 16], [3, 16]])
        self.inception_5b = Inception_base(1, 120, [[40], [32, 48], [12, 16], [3, 16]])
        self.avg_pool5 = nn.AvgPool2d(kernel_size=3, stride=2, padding=0)
        self.dropout_layer = nn.Dropout(0.4)
        self.fc = nn.Linear(120 * 9, num_classes)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        output = self.max_pool1(F.relu(self.conv1(input)))
        output = self.lrn1(output)
        output = self.inception_3a(output)
        output = self.inception_3b(output)
        output = self.max_pool_inc3(output)
        output = self.inception_5a(output)
        output = self.inception_5b(output)
        output = self.avg_pool5(output)
        output = output.view(-1, 120 * 9)
        output = self.dropout_layer(output)
        return self.fc(output)


def inception_cifar(num_classes: int = 10) -> Inception_v1:
    """Seed 000 Inception-v1 (exactly 107,596 params)."""
    return Inception_v1(num_classes)


# ---------------------------------------------------------------------------
# Seed 001: Inception block (v2/v3 style) with BasicConv2d (bias-free conv + BN 1e-3)
# ---------------------------------------------------------------------------


class BasicConv2dV3(nn.Module):
    """Seed 001 / torchvision Inception3 ``BasicConv2d``: conv (no bias) - BN(eps=0.001) - ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class InceptionBlockV3(nn.Module):
    """Seed 001 ``Inception(in_channels, pool_features)``, a cut-down torchvision InceptionA.

    Branches: 1x1(64); 1x1(48)-5x5(64, pad 2); 1x1(64)-3x3(96, pad 1) (the post has
    only *one* 3x3 here, the second is commented out); avg_pool 3/1/1 - 1x1(pool_features).
    Quirk: the concat order is ``[1x1, 3x3, 5x5, pool]`` although the 5x5 branch is
    defined first. Output channels 64 + 96 + 64 + pool_features; spatial size kept.
    Attribute names use the post's capital ``X`` (``branch1X1``, ``branch5X5_1`` ...).
    """

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1X1 = BasicConv2dV3(in_channels, 64, kernel_size=1)
        self.branch5X5_1 = BasicConv2dV3(in_channels, 48, kernel_size=1)
        self.branch5X5_2 = BasicConv2dV3(48, 64, kernel_size=5, padding=2)
        self.branch3X3_1 = BasicConv2dV3(in_channels, 64, kernel_size=1)
        self.branch3X3_2 = BasicConv2dV3(64, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2dV3(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1X1 = self.branch1X1(x)
        branch5X5 = self.branch5X5_2(self.branch5X5_1(x))
        branch3X3 = self.branch3X3_2(self.branch3X3_1(x))
        branch_pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
        branch_pool = self.branch_pool(branch_pool)
        return torch.cat([branch1X1, branch3X3, branch5X5, branch_pool], 1)


def inception_block_v3(in_channels: int = 192, pool_features: int = 32) -> InceptionBlockV3:
    """Seed 001 Inception block. The post never instantiates it; the defaults are those of
    torchvision Inception3 ``Mixed_5b = InceptionA(192, pool_features=32)`` at 192x35x35,
    which the post's code is derived from (it imports ``torchvision.models.inception``)."""
    return InceptionBlockV3(in_channels, pool_features)


# ---------------------------------------------------------------------------
# Seed 003: GoogLeNet for CIFAR-10
# ---------------------------------------------------------------------------


class BasicConv2d(nn.Module):
    """Seed 003 ``BasicConv2d``: conv - BN - ReLU.

    As written in the post's ``model.py`` the conv **keeps its bias** and BN uses the
    default ``eps=1e-5`` (unlike torchvision's GoogLeNet, which uses ``bias=False`` and
    ``eps=0.001``); both are exposed as arguments.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        conv_bias: bool = True,
        bn_eps: float = 1e-5,
        **kwargs: int,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=conv_bias, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(X)))


class Inception(nn.Module):
    """Seed 003 GoogLeNet ``Inception``; branch2 is 1x1-3x3, branch3 is 1x1-**5x5** (pad 2)
    as in the paper (torchvision uses 3x3 there); branch4 is maxpool 3/1/1 - 1x1."""

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        conv: Callable[..., nn.Module] = BasicConv2d,
    ) -> None:
        super().__init__()
        self.branch1 = conv(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            conv(in_channels, ch3x3red, kernel_size=1),
            conv(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            conv(in_channels, ch5x5red, kernel_size=1),
            conv(ch5x5red, ch5x5, kernel_size=5, padding=2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            conv(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        outputs = [self.branch1(X), self.branch2(X), self.branch3(X), self.branch4(X)]
        return torch.cat(outputs, dim=1)


class AuxClassifier(nn.Module):
    """Seed 003 auxiliary head: AvgPool2d(5, 3) - BasicConv2d 1x1(128) - flatten -
    fc1(2048, 1024) - ReLU - dropout(0.7) - fc2. On the 16x16 CIFAR maps of 4a/4d the
    pool gives 4x4, so 128*4*4 = 2048 (same parameters as torchvision ``InceptionAux``,
    which uses ``AdaptiveAvgPool2d((4, 4))`` instead)."""

    def __init__(
        self, in_channels: int, num_classes: int, conv: Callable[..., nn.Module] = BasicConv2d
    ) -> None:
        super().__init__()
        self.averagePool = nn.AvgPool2d(kernel_size=5, stride=3)
        self.conv = conv(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        X = self.averagePool(X)
        X = self.conv(X)
        X = torch.flatten(X, start_dim=1)
        X = F.relu(self.fc1(X), inplace=True)
        X = F.dropout(X, 0.7, training=self.training)
        return self.fc2(X)


class GoogLeNet(nn.Module):
    """Seed 003 ``model.py`` GoogLeNet for CIFAR-10 (3x32x32), the 95.16% model.

    Changes vs. the paper: conv1 is 3x3 stride 1 pad 1 (not 7x7/2), ``maxpool1`` and
    ``maxpool2`` are still constructed but skipped in ``forward`` (parameter-free, so
    no ``state_dict`` entries), BN in every ``BasicConv2d``. Spatial: 32 through
    conv1/conv2/3a/3b, 16 after maxpool3 (ceil_mode), 8 after maxpool4, then global
    average pool, Dropout(0.4), Linear(1024, 10).

    Aux heads (after 4a on 512 ch, after 4d on 528 ch) exist only when
    ``aux_logits=True``; they run only in training mode and then ``forward`` returns
    ``(logits, aux2, aux1)`` (loss = main + 0.3 * aux1 + 0.3 * aux2). In eval mode it
    always returns plain logits. The final training run uses ``aux_logits=False``.
    There is no ``transform_input`` (that is a torchvision-only option).
    """

    def __init__(
        self,
        num_classes: int = 10,
        aux_logits: bool = False,
        conv_bias: bool = True,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        conv = partial(BasicConv2d, conv_bias=conv_bias, bn_eps=bn_eps)
        self.aux_logits = aux_logits
        # self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)  (paper)
        self.conv1 = conv(3, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        self.conv2 = conv(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32, conv=conv)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64, conv=conv)
        self.maxpool3 = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64, conv=conv)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64, conv=conv)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64, conv=conv)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64, conv=conv)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128, conv=conv)
        self.maxpool4 = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128, conv=conv)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128, conv=conv)
        if self.aux_logits:
            self.aux1 = AuxClassifier(512, num_classes, conv=conv)
            self.aux2 = AuxClassifier(528, num_classes, conv=conv)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.4)
        self.fc = nn.Linear(1024, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, X: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        X = self.conv1(X)
        # X = self.maxpool1(X)
        X = self.conv2(X)
        # X = self.maxpool2(X)
        X = self.inception3a(X)
        X = self.inception3b(X)
        X = self.maxpool3(X)
        X = self.inception4a(X)
        aux1 = self.aux1(X) if self.training and self.aux_logits else None
        X = self.inception4b(X)
        X = self.inception4c(X)
        X = self.inception4d(X)
        aux2 = self.aux2(X) if self.training and self.aux_logits else None
        X = self.inception4e(X)
        X = self.maxpool4(X)
        X = self.inception5a(X)
        X = self.inception5b(X)
        X = self.avgpool(X)
        X = torch.flatten(X, start_dim=1)
        X = self.dropout(X)
        X = self.fc(X)
        if aux1 is not None and aux2 is not None:
            return X, aux2, aux1
        return X


def googlenet_cifar(
    num_classes: int = 10, aux_logits: bool = False, conv_bias: bool = True, bn_eps: float = 1e-5
) -> GoogLeNet:
    """Seed 003 GoogLeNet for CIFAR-10 (5,986,394 params; 10,337,134 with aux heads).

    ``conv_bias=False, bn_eps=1e-3`` gives the torchvision-``BasicConv2d`` flavour
    (5,979,178 / 10,329,662 params)."""
    return GoogLeNet(num_classes, aux_logits, conv_bias, bn_eps)


# ---------------------------------------------------------------------------
# He et al. 2016 CIFAR ResNet-20/32/56, option A shortcut
# ---------------------------------------------------------------------------


class PadShortcut(nn.Module):
    """Option-A shortcut: spatial subsample ``x[:, :, ::2, ::2]`` and zero-pad channels
    symmetrically (``planes // 4`` each side for a doubling), no parameters."""

    def __init__(self, in_planes: int, planes: int) -> None:
        super().__init__()
        self.pad = (planes - in_planes) // 2
        self.extra = planes - in_planes - self.pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.extra), "constant", 0.0)


class CifarBasicBlock(nn.Module):
    """Basic block of the CIFAR ResNets (He et al. 2016, sec. 4.2); names as in the
    widely used akamaster/pytorch_resnet_cifar10 (``shortcut`` is empty or option A)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, option: str = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            if option == "A":
                self.shortcut = PadShortcut(in_planes, planes)
            elif option == "B":
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes),
                )
            else:
                raise ValueError(f"unknown shortcut option {option!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return F.relu(out)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for CIFAR-10: conv3x3(16) - BN - ReLU, three stages of n blocks at
    16/32/64 channels (32x32, 16x16, 8x8), global average pool, Linear(64, 10).

    ``option="A"`` (default, the paper's CIFAR setting) uses the parameter-free
    subsample + zero-pad shortcut; ``option="B"`` uses a 1x1 conv + BN projection at the
    two downsampling blocks, which adds exactly 2,752 parameters."""

    def __init__(self, num_blocks: Sequence[int], num_classes: int = 10, option: str = "A") -> None:
        super().__init__()
        self.option = option
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(32, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(64, num_blocks[2], stride=2)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight)

    def _make_layer(self, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(CifarBasicBlock(self.in_planes, planes, s, self.option))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = F.avg_pool2d(out, out.size()[3])
        out = out.view(out.size(0), -1)
        return self.linear(out)


def resnet20(num_classes: int = 10, option: str = "A") -> CifarResNet:
    """ResNet-20, n=3 (269,722 params, option B 272,474; paper: 0.27M)."""
    return CifarResNet([3, 3, 3], num_classes, option)


def resnet32(num_classes: int = 10, option: str = "A") -> CifarResNet:
    """ResNet-32, n=5 (464,154 params, option B 466,906; paper: 0.46M)."""
    return CifarResNet([5, 5, 5], num_classes, option)


def resnet56(num_classes: int = 10, option: str = "A") -> CifarResNet:
    """ResNet-56, n=9 (853,018 params, option B 855,770; paper: 0.85M)."""
    return CifarResNet([9, 9, 9], num_classes, option)


# ---------------------------------------------------------------------------
# torchvision-style ResNet-18 for CIFAR (hand-written module for the speed benchmark)
# ---------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """torchvision ``BasicBlock`` (conv3x3 no bias - BN - ReLU - conv3x3 - BN, + identity
    or ``downsample`` = conv1x1(stride, no bias) + BN, ReLU)."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet18Cifar(nn.Module):
    """torchvision ``resnet18`` adapted to CIFAR-10 (3x32x32): ``conv1`` is 3x3 stride 1
    pad 1 (no bias), the stem maxpool is removed, BasicBlock [2, 2, 2, 2] at
    64/128/256/512 (32, 16, 8, 4 spatial), AdaptiveAvgPool2d(1), ``fc`` = Linear(512, 10).
    ``state_dict`` keys equal torchvision's resnet18 (only conv1/fc shapes differ)."""

    def __init__(self, layers: Sequence[int] = (2, 2, 2, 2), num_classes: int = 10) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        for _ in range(1, blocks):
            layers.append(BasicBlock(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def resnet18_cifar_handwritten(num_classes: int = 10) -> ResNet18Cifar:
    """ResNet-18 for CIFAR (11,173,962 params at 10 classes)."""
    return ResNet18Cifar((2, 2, 2, 2), num_classes)


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------

Builder = Callable[[], nn.Module]

REFERENCE_MODELS: dict[str, tuple[Builder, tuple[int, ...], int]] = {
    # seed 001
    "lenet5": (lenet5, (1, 32, 32), 61_706),
    "inception_block_v3": (inception_block_v3, (192, 35, 35), 172_768),
    # seed 004
    "lenet_d2l": (lenet_d2l, (1, 28, 28), 61_706),
    "alexnet_d2l": (alexnet_d2l, (1, 224, 224), 46_764_746),
    "alexnet_small": (alexnet_small, (1, 224, 224), 45_406_986),
    "fmnist_net": (fmnist_net, (1, 28, 28), 3_241_354),
    "resnet18_d2l": (resnet18_d2l, (1, 224, 224), 11_178_378),
    # seeds 002 / 004
    "vgg11_d2l": (vgg11_d2l, (1, 224, 224), 128_806_154),
    "vgg11_d2l_ratio4": (partial(vgg11_d2l, ratio=4), (1, 224, 224), 43_093_322),
    # seed 000
    "resnet_cifar": (resnet_cifar, (3, 32, 32), 195_738),
    "vgg_bn_cifar": (vgg_bn_cifar, (3, 32, 32), 207_002),
    "vgg_cifar": (partial(vgg_bn_cifar, batch_norm=False), (3, 32, 32), 206_170),
    "inception_cifar": (inception_cifar, (3, 32, 32), 107_596),
    # seed 003
    "googlenet_cifar": (googlenet_cifar, (3, 32, 32), 5_986_394),
    "googlenet_cifar_aux": (partial(googlenet_cifar, aux_logits=True), (3, 32, 32), 10_337_134),
    # He et al. 2016, option A
    "resnet20": (resnet20, (3, 32, 32), 269_722),
    "resnet32": (resnet32, (3, 32, 32), 464_154),
    "resnet56": (resnet56, (3, 32, 32), 853_018),
    "resnet20_option_b": (partial(resnet20, option="B"), (3, 32, 32), 272_474),
    # speed-benchmark hand-written module
    "resnet18_cifar_handwritten": (resnet18_cifar_handwritten, (3, 32, 32), 11_173_962),
}

#: Per-sample output shape of each entry in eval mode (logits unless stated).
OUTPUT_SHAPES: dict[str, tuple[int, ...]] = {name: (10,) for name in REFERENCE_MODELS}
OUTPUT_SHAPES["inception_block_v3"] = (256, 35, 35)
