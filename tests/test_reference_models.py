"""Sanity checks for the hand-written reference modules in ``tests/reference_models.py``.

Each entry must have exactly the documented parameter count and run a forward pass on a
zero batch of 2 in eval mode with the documented output shape.
"""

from __future__ import annotations

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


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_param_count_and_forward_shape(name: str) -> None:
    """One model built for both checks (VGG-11 of d2l has 129M parameters to initialise)."""
    builder, input_shape, expected = REFERENCE_MODELS[name]
    model = builder().eval()
    assert n_params(model) == expected
    with torch.no_grad():
        out = model(torch.zeros(2, *input_shape))
    assert isinstance(out, torch.Tensor)
    assert tuple(out.shape) == (2, *OUTPUT_SHAPES[name])


def test_seed000_readme_counts() -> None:
    # /work/shared/seeds/README.md: ResNet 195,738; VGG-BN 207,002
    # (206,170 w/o BN); Inception 107,596
    assert n_params(resnet_cifar()) == 195_738
    assert n_params(vgg_bn_cifar()) == 207_002
    assert n_params(vgg_bn_cifar(batch_norm=False)) == 206_170
    assert n_params(inception_cifar()) == 107_596


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
    assert n_params(googlenet_cifar(conv_bias=False, bn_eps=1e-3)) == 5_979_178
    assert n_params(googlenet_cifar(aux_logits=True, conv_bias=False, bn_eps=1e-3)) == 10_329_662
