"""Batched transforms agree with straightforward per-image references."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from archc.trainer.augment import BatchPipeline, random_crop


def _pipeline(**kw: object) -> BatchPipeline:
    options = {
        "crop_padding": 2,
        "hflip": True,
        "resize": None,
        "channels_last": False,
        "device": torch.device("cpu"),
    }
    options.update(kw)
    return BatchPipeline(torch.tensor([0.5, 0.25, 0.75]), torch.tensor([0.2, 0.1, 0.4]), **options)  # type: ignore[arg-type]


def test_random_crop_matches_per_image_slicing() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 10, 12), dtype=torch.uint8, generator=gen)
    offsets = torch.randint(0, 7, (16, 2), generator=gen)
    out = random_crop(x, offsets, 3)
    padded = F.pad(x, (3, 3, 3, 3))
    for i, (dy, dx) in enumerate(offsets.tolist()):
        assert torch.equal(out[i], padded[i, :, dy : dy + 10, dx : dx + 12])


def test_centre_offset_is_the_identity() -> None:
    x = torch.randint(0, 256, (4, 1, 6, 6), dtype=torch.uint8)
    assert torch.equal(random_crop(x, torch.full((4, 2), 2), 2), x)


def test_train_batch_flips_only_flagged_images_and_normalises() -> None:
    pipe = _pipeline(crop_padding=0)
    x = torch.randint(0, 256, (4, 3, 5, 7), dtype=torch.uint8)
    flips = torch.tensor([True, False, True, False])
    out = pipe.train_batch(x, torch.zeros(4, 2, dtype=torch.long), flips)
    expected = (x.float() / 255 - torch.tensor([0.5, 0.25, 0.75]).view(1, 3, 1, 1)) / torch.tensor(
        [0.2, 0.1, 0.4]
    ).view(1, 3, 1, 1)
    expected[flips] = expected[flips].flip(-1)
    assert torch.allclose(out, expected, atol=1e-5)


def test_eval_batch_is_deterministic_and_resizes() -> None:
    pipe = _pipeline(resize=(16, 20), channels_last=True)
    x = torch.randint(0, 256, (2, 3, 8, 10), dtype=torch.uint8)
    a, b = pipe.eval_batch(x), pipe.eval_batch(x)
    assert a.shape == (2, 3, 16, 20) and torch.equal(a, b)
    assert a.is_contiguous(memory_format=torch.channels_last)


def test_draws_come_only_from_the_given_generator() -> None:
    pipe = _pipeline(crop_padding=4)
    offsets_a, flips_a = pipe.draw(1000, torch.Generator().manual_seed(3))
    torch.manual_seed(123)  # the global RNG must not matter
    offsets_b, flips_b = pipe.draw(1000, torch.Generator().manual_seed(3))
    assert torch.equal(offsets_a, offsets_b) and torch.equal(flips_a, flips_b)
    assert int(offsets_a.min()) == 0 and int(offsets_a.max()) == 8
    assert 400 < int(flips_a.sum()) < 600
