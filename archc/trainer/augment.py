"""Batched image transforms on the training device: random crop with padding, horizontal flip,
normalisation and resize, applied to whole uint8 batches so no per-sample Python runs per step.

Random draws come from the caller (one tensor per epoch, see feed.EpochPlan), which keeps them a
pure function of (seed, epoch) and identical across data-parallel ranks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class BatchPipeline:
    """uint8 (B, C, H, W) batches in, normalised float batches of the model's input size out."""

    def __init__(
        self,
        mean: torch.Tensor,
        std: torch.Tensor,
        *,
        crop_padding: int,
        hflip: bool,
        resize: tuple[int, int] | None,
        channels_last: bool,
        device: torch.device,
    ) -> None:
        self.crop_padding = crop_padding
        self.hflip = hflip
        self.resize = resize
        self.channels_last = channels_last
        self.mean = mean.float().view(1, -1, 1, 1).to(device)
        self.std = std.float().view(1, -1, 1, 1).to(device)

    @classmethod
    def normalising(
        cls, mean: torch.Tensor, std: torch.Tensor, *, channels_last: bool, device: torch.device
    ) -> BatchPipeline:
        """For feeds whose loader workers crop, flip and resize: batches are only normalised."""
        return cls(
            mean,
            std,
            crop_padding=0,
            hflip=False,
            resize=None,
            channels_last=channels_last,
            device=device,
        )

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Crop offsets (n, 2) in [0, 2 * padding] and flip flags (n,) for n consecutive samples."""
        offsets = torch.randint(0, 2 * self.crop_padding + 1, (n, 2), generator=generator)
        flips = torch.rand(n, generator=generator) < 0.5
        return offsets, flips

    def train_batch(
        self, x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor
    ) -> torch.Tensor:
        """Crop and flip (with the given draws), then normalise and resize."""
        if self.crop_padding:
            x = random_crop(x, offsets, self.crop_padding)
        if self.hflip:
            x = torch.where(flips.view(-1, 1, 1, 1), x.flip(3), x)
        return self._finish(x)

    def eval_batch(self, x: torch.Tensor) -> torch.Tensor:
        return self._finish(x)

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        # torchvision's arithmetic (ToDtype(scale=True), Normalize): the very tensors its reference
        # evaluation feeds a model, bit for bit; a fused x * scale - shift differs in the last bit
        out = x.float().div_(255.0).sub_(self.mean).div_(self.std)
        if self.resize is not None and tuple(out.shape[2:]) != self.resize:
            shrinking = self.resize[0] < out.shape[2] or self.resize[1] < out.shape[3]
            out = F.interpolate(
                out, size=self.resize, mode="bilinear", align_corners=False, antialias=shrinking
            )
        if self.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out


def random_crop(x: torch.Tensor, offsets: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad by `padding` and cut each image's window at its (dy, dx) offset: two gathers."""
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = (
        (offsets[:, 0:1] + torch.arange(h, device=x.device))
        .view(b, 1, h, 1)
        .expand(b, c, h, w + 2 * padding)
    )
    cols = (offsets[:, 1:2] + torch.arange(w, device=x.device)).view(b, 1, 1, w).expand(b, c, h, w)
    return padded.gather(2, rows).gather(3, cols)
