"""The GoogLeNet-CIFAR post's other models and the seeds' initialisations, against their code.

- `googlenet_paper`: the post's first GoogLeNet (the paper's layout, conv + ReLU without BN), here
  in the post's first CIFAR configuration (32x32, the first three max pools dropped) with aux heads:
  same keys, and in training the same (main, aux2, aux1) outputs, dropout masks included.
- `googlenet_cifar --set bn=false`: the post's runs before it added BN.
- `inception_cifar`: xavier_uniform weights and zero biases, as its reference code initialises.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from archc import api
from tests import reference_models as ref


def without_bn(model: nn.Module) -> nn.Module:
    """The post's BasicConv2d before BN: conv (with bias) + ReLU."""
    for module in model.modules():
        if isinstance(module, ref.BasicConv2d):
            module.bn = nn.Identity()
    return model


class PaperGoogLeNet(ref.GoogLeNet):
    """The post's first `GoogLeNet`: 7x7/2 conv1, BasicConv2d without BN, max pools switchable."""

    def __init__(self, aux_logits: bool, pools: tuple[bool, bool, bool]) -> None:
        super().__init__(10, aux_logits)
        self.conv1 = ref.BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        without_bn(self)
        self.pools = pools

    def forward(self, X: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        X = self.conv1(X)
        X = self.maxpool1(X) if self.pools[0] else X
        X = self.conv2(X)
        X = self.maxpool2(X) if self.pools[1] else X
        X = self.inception3b(self.inception3a(X))
        X = self.maxpool3(X) if self.pools[2] else X
        X = self.inception4a(X)
        aux1 = self.aux1(X) if self.training and self.aux_logits else None
        X = self.inception4d(self.inception4c(self.inception4b(X)))
        aux2 = self.aux2(X) if self.training and self.aux_logits else None
        X = self.maxpool4(self.inception4e(X))
        X = self.avgpool(self.inception5b(self.inception5a(X)))
        X = self.fc(self.dropout(torch.flatten(X, 1)))
        return (X, aux2, aux1) if aux1 is not None and aux2 is not None else X


def test_paper_googlenet_is_the_posts_first_model() -> None:
    cifar = {"image_size": 32, "maxpool1": False, "maxpool2": False, "maxpool3": False, "aux": True}
    torch.manual_seed(0)
    theirs = PaperGoogLeNet(aux_logits=True, pools=(False, False, False))
    ours = api.build("specs/googlenet_paper.yaml", **cifar)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in theirs.state_dict().items()
    ]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in ours.modules())
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1)
    main, aux2, aux1 = ours.train()(x)
    torch.manual_seed(1)
    for a, b in zip((main, aux2, aux1), theirs.train()(x), strict=True):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x))


def test_paper_googlenet_at_224_has_the_paper_stem() -> None:
    graph = api.compile_graph("specs/googlenet_paper.yaml")
    assert graph.nodes["conv1.conv"].args.kernel == 7 and graph.shape_of("maxpool2") == (
        192,
        28,
        28,
    )
    assert graph.shape_of("inception4a.concat") == (512, 14, 14)  # the aux heads' 14x14 maps


def test_googlenet_cifar_without_bn_is_the_posts_first_runs() -> None:
    torch.manual_seed(0)
    theirs = without_bn(ref.googlenet_cifar()).eval()
    ours = api.build("specs/googlenet_cifar.yaml", bn=False).eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


def test_inception_cifar_is_xavier_initialised_with_zero_biases() -> None:
    torch.manual_seed(0)
    model = api.build("specs/inception_cifar.yaml")
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers
    for layer in layers:
        fan_in = layer.weight[0].numel()
        fan_out = layer.weight.shape[0] * layer.weight[0, 0].numel()
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.8 * bound
        assert layer.bias is None or not layer.bias.any()
