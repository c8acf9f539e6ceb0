"""What reads a whole image split reads it in bounded pieces: input statistics (a seeded sample past a
size), the raw-pixel baseline (at most 32 x 32 pixels a channel), features chunk by chunk."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import selfsup.modalities.image as image
from selfsup.data.base import Dataset
from selfsup.evaluate.features import raw_features
from selfsup.modalities.image import MODALITY, input_stats
from selfsup.modalities.image.views import channel_stats


def photos(n: int, side: int, seed: int = 0) -> torch.Tensor:
    """Images whose brightness varies from image to image, as photos' does."""
    g = torch.Generator().manual_seed(seed)
    level = torch.rand(n, 3, 1, 1, generator=g) * 160
    return (level + torch.rand(n, 3, side, side, generator=g) * 90).to(torch.uint8)


def test_statistics_past_the_size_limit_come_from_a_seeded_sample_close_to_the_exact_ones(monkeypatch):
    images = photos(6000, 8)
    data = Dataset("photos", images, None, None, None, None, "here")
    exact = channel_stats(images)
    assert input_stats(data, 3) == exact  # under the limit: every image, exactly
    monkeypatch.setattr(image, "STATS_FULL_BYTES", images.numel() - 1)
    sampled = input_stats(data, 3)
    assert sampled == input_stats(data, 3), "seeded: the same statistics every time"
    assert sampled != exact
    for got, want in zip(sampled[0] + sampled[1], exact[0] + exact[1]):
        assert abs(got - want) < 0.01  # 4,096 images: standard error ~0.002 here


def test_channel_stats_do_not_depend_on_the_chunking_and_take_rows():
    images = photos(300, 12)
    whole = channel_stats(images)
    assert channel_stats(images, chunk=7) == whole
    rows = torch.tensor([5, 7, 100, 299])
    assert channel_stats(images, rows, chunk=3) == channel_stats(images[rows])


def test_the_raw_baseline_is_the_pixels_of_small_images_and_a_32_px_area_average_of_large_ones():
    small = photos(10, 28)
    assert torch.equal(MODALITY.raw_features(small), small.reshape(10, -1).float() / 255)  # Fashion-MNIST: as before
    large = photos(10, 96)
    raw = MODALITY.raw_features(large)
    assert raw.shape == (10, 3 * 32 * 32)
    want = large.float().reshape(10, 3, 32, 3, 32, 3).mean((3, 5)).reshape(10, -1) / 255  # 3 x 3 blocks
    torch.testing.assert_close(raw, want)
    wide = photos(4, 40)[..., :20]  # 40 x 20: only the side past 32 is averaged
    assert MODALITY.raw_features(wide).shape == (4, 3 * 32 * 20)
    torch.testing.assert_close(
        MODALITY.raw_features(wide), F.adaptive_avg_pool2d(wide.float(), (32, 20)).reshape(4, -1) / 255
    )


def test_raw_features_are_computed_in_chunks_of_bounded_size_with_the_same_result():
    images = photos(50, 96)
    assert torch.equal(raw_features(MODALITY, images, chunk_values=3 * 96 * 96 * 7), MODALITY.raw_features(images))
