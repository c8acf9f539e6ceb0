"""The random resized crop of prepared images: boxes drawn on each photo's own pixel grid (its size in the
file, ``source_size``) and scaled to the square it is stored in, so the crop statistics are the photo's."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from test_augment import gen, ramp_image, recover_boxes, reference_boxes

from selfsup.data.base import Rows
from selfsup.modalities.image.ops import resized_crop_flip
from selfsup.modalities.image.views import ViewConfig, ViewRecipe

SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)


def photo_fractions(out: torch.Tensor, stored: int, source: torch.Tensor):
    """Each box as the photo sees it: its area as a fraction of the photo's, its log aspect ratio in the
    photo's pixels, and its edges as fractions of the photo's sides (read off the stored square's ramps)."""
    left, top, w, h, _ = recover_boxes(out, stored, stored)
    fw, fh = w / stored, h / stored  # fractions of the photo's width and height
    height, width = source[:, 0].double(), source[:, 1].double()
    return fw * fh, torch.log(fw * width / (fh * height)), left / stored, top / stored, fw, fh


def check_distribution(area, log_ratio, height, width, n):
    ref_area, ref_log = reference_boxes(200_000, height, width, SCALE, RATIO, np.random.default_rng(0))
    area, log_ratio = area.numpy(), log_ratio.numpy()
    assert abs(area.mean() - ref_area.mean()) < 4 * ref_area.std() / math.sqrt(n) + 2e-3
    assert abs(log_ratio.mean() - ref_log.mean()) < 4 * ref_log.std() / math.sqrt(n) + 2e-3
    for got, want, edges in (
        (area, ref_area, np.linspace(SCALE[0], SCALE[1], 9)),
        (log_ratio, ref_log, np.linspace(math.log(RATIO[0]), math.log(RATIO[1]), 9)),
    ):
        want_hist = np.histogram(want, edges)[0] / len(want)
        for g, w in zip(np.histogram(got, edges)[0] / n, want_hist):
            assert abs(g - w) < 4 * math.sqrt(w * (1 - w) / n) + 5e-3


def test_boxes_follow_torchvision_on_each_photo_whatever_its_shape_in_one_batch():
    n, stored = 4096, 32
    source = torch.tensor([[480, 640], [640, 480]], dtype=torch.int32).repeat(n // 2, 1)  # 4:3 and 3:4 photos
    x = ramp_image(stored, stored).expand(n, -1, -1, -1)
    out = resized_crop_flip(x, 8, SCALE, RATIO, generator=gen(), source_size=source)
    area, log_ratio, left, top, fw, fh = photo_fractions(out, stored, source)
    assert area.min() >= SCALE[0] - 1e-3 and area.max() <= SCALE[1] + 1e-3
    assert log_ratio.abs().max() <= math.log(4 / 3) + 1e-3, "the ratio is the photo's, not the square's"
    assert left.min() >= -1e-3 and (left + fw).max() <= 1 + 1e-3 and top.min() >= -1e-3 and (top + fh).max() <= 1 + 1e-3
    for group, (height, width) in enumerate([(480, 640), (640, 480)]):
        rows = slice(group, None, 2)
        check_distribution(area[rows], log_ratio[rows], height, width, n // 2)
    # The offset is uniform over the positions where the box fits, as a fraction of the photo's room.
    room = 1 - fw
    where = (left / room)[room > 0.1].numpy()
    assert abs(where.mean() - 0.5) < 4 * math.sqrt(1 / 12 / len(where))


def test_without_the_photos_sizes_the_ratio_is_the_squares_and_the_statistics_drift():
    # The check above can fail: the same squeezed 4:3 photos cropped as if they were square give
    # boxes whose ratio in the photo's pixels is shifted by log(4/3) on average.
    n, stored = 4096, 32
    source = torch.tensor([[480, 640]], dtype=torch.int32).expand(n, -1)
    out = resized_crop_flip(ramp_image(stored, stored).expand(n, -1, -1, -1), 8, SCALE, RATIO, generator=gen())
    _, log_ratio, *_ = photo_fractions(out, stored, source)
    assert log_ratio.mean() > math.log(4 / 3) - 0.02 and log_ratio.max() > math.log(4 / 3) + 0.2


def test_with_its_own_size_as_the_source_size_the_crop_is_bit_identical():
    for height, width in ((20, 20), (24, 18)):  # a square, and a 3:4 image (the fallback is the whole)
        x = torch.rand(128, 3, height, width, generator=gen(1))
        own = torch.tensor([[height, width]], dtype=torch.int32).expand(128, -1)
        plain = resized_crop_flip(x, 12, generator=gen(2))
        sized = resized_crop_flip(x, 12, generator=gen(2), source_size=own)
        assert torch.equal(plain, sized)


def test_the_fallback_is_the_centred_box_of_the_photo():
    # A 2:1 photo squeezed into 20 x 20 holds no square box of its whole area: torchvision's fallback
    # is its centred square, the middle half of its width, so columns 5..15 of the stored square.
    x = torch.rand(3, 3, 20, 20, generator=gen())
    source = torch.tensor([[100, 200]], dtype=torch.int32).expand(3, -1)
    out = resized_crop_flip(x, 10, (1.0, 1.0), (1.0, 1.0), flip_p=0.0, generator=gen(), source_size=source)
    want = F.interpolate(x[..., 5:15], size=(10, 10), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=0)


def test_the_views_of_rows_take_each_images_source_size():
    crop_only = ViewConfig(size=8, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)
    recipe = ViewRecipe([crop_only] * 2, 3, [0.5] * 3, [0.25] * 3)
    images = (torch.rand(64, 3, 16, 16, generator=gen()) * 255).to(torch.uint8)
    own = torch.tensor([[16, 16]], dtype=torch.int32).expand(64, -1)
    wide = torch.tensor([[90, 160]], dtype=torch.int32).expand(64, -1)
    plain = recipe(images, gen(3))
    same = recipe(Rows(images, {"source_size": own}), gen(3))
    other = recipe(Rows(images, {"source_size": wide}), gen(3))
    assert all(torch.equal(a, b) for a, b in zip(plain, same))
    assert not torch.equal(plain[0], other[0])
    assert torch.equal(recipe.eval_transform(Rows(images, {"source_size": wide})), recipe.eval_transform(images))
