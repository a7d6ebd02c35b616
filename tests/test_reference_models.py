"""Sanity checks for the hand-written reference modules in ``tests/reference_models.py``.

Each entry must have exactly the documented parameter count and run a forward pass on a
zero batch of 2 in eval mode with the documented output shape. Counts and shapes are the claims
here, so the models of more than 20M parameters (d2l's AlexNets and VGG-11s, whose CPU outputs
tests/test_zoo.py compares with their specs) are built and run on the meta device: no 129M
parameters to initialise and no 224x224 convolutions; parameter counts alone are always taken
there.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from tests.reference_models import (
    OUTPUT_SHAPES,
    REFERENCE_MODELS,
    googlenet_cifar,
    inception_cifar,
    resnet_cifar,
    vgg_bn_cifar,
)

NAMES = sorted(REFERENCE_MODELS)


ON_META = 20_000_000  # parameters above which a model is built and run on the meta device


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def counted(builder: Callable[[], torch.nn.Module]) -> int:
    """The parameter count of the model `builder` makes, built on the meta device."""
    with torch.device("meta"):
        return n_params(builder())


@pytest.mark.parametrize("name", NAMES)
def test_param_count_and_forward_shape(name: str) -> None:
    """One model built for both checks."""
    builder, input_shape, expected = REFERENCE_MODELS[name]
    device = torch.device("meta" if expected > ON_META else "cpu")
    with device:
        model = builder().eval()
    assert n_params(model) == expected
    with torch.no_grad():
        out = model(torch.zeros(2, *input_shape, device=device))
    assert isinstance(out, torch.Tensor)
    assert tuple(out.shape) == (2, *OUTPUT_SHAPES[name])


def test_seed000_readme_counts() -> None:
    # /work/shared/seeds/README.md: ResNet 195,738; VGG-BN 207,002
    # (206,170 w/o BN); Inception 107,596
    assert counted(resnet_cifar) == 195_738
    assert counted(vgg_bn_cifar) == 207_002
    assert counted(lambda: vgg_bn_cifar(batch_norm=False)) == 206_170
    assert counted(inception_cifar) == 107_596


def test_googlenet_aux_heads_only_in_training() -> None:
    model = googlenet_cifar(aux_logits=True).train()
    outs = model(torch.zeros(2, 3, 32, 32))
    assert isinstance(outs, tuple) and len(outs) == 3  # (logits, aux2, aux1)
    assert all(tuple(o.shape) == (2, 10) for o in outs)
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 32, 32))
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (2, 10)


def test_googlenet_torchvision_flavour_counts() -> None:
    # bias-free convs + BN eps 1e-3 (torchvision BasicConv2d) instead of the post's conv bias
    assert counted(lambda: googlenet_cifar(conv_bias=False, bn_eps=1e-3)) == 5_979_178
    assert counted(lambda: googlenet_cifar(aux_logits=True, conv_bias=False, bn_eps=1e-3)) == (
        10_329_662
    )
