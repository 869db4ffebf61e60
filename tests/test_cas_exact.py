"""Exact, fast tests of pixelbook.cas pinning down boundaries that tests/test_cas.py leaves open
(found by mutation testing: ``tools/mutation.py pixelbook/cas.py tests/test_cas.py tests/test_cas_exact.py``).

Values are computed by hand (or by a literal float64 formula) in the test, never taken from a run."""

import pytest
import torch

from fakes import cas_eq1, random_probs
from pixelbook.cas import cas_loss, cas_terms, permute_region_labels, select_channel


class TestOneLabelledPixel:
    def test_an_image_with_one_labelled_pixel_has_one_region_not_none(self):
        # image 1: a single labelled pixel, the rest void. That is a partition with one region (not
        # an all-void image): "raise" must name it, "skip" must leave it out of the mean.
        s = random_probs(B=2, M=2, H=2, W=2, seed=50)
        y = torch.tensor([[[0, 1], [1, 0]], [[255, 255], [3, 255]]])
        with pytest.raises(ValueError, match=r"^`labels`: image 1 has a single region; "):
            cas_loss(s, y)
        with pytest.raises(ValueError, match=r"^`labels`: image 1 has a single region; "):
            cas_terms(s, y)
        per = cas_loss(s, y, reduction="none", single_region="skip")
        assert per[1] == 0 and per[0] != 0
        assert cas_loss(s, y, single_region="skip") == per[0]


class TestIgnoreIndexPaperVariant:
    def test_the_ignore_index_given_is_the_one_used(self):
        # labels 0, 7 and 255: with ignore_index=None 255 is a third region, with ignore_index=7 the
        # 7s are void and 255 is a region; the default (255) makes the 255s void
        s = random_probs(B=2, M=3, H=4, W=4, seed=51)
        y = torch.zeros(2, 4, 4, dtype=torch.long)
        y[:, 1], y[:, 2:, :2] = 7, 255
        y[1, 3, 3] = 7
        for ignore_index in (None, 7, 255):
            torch.testing.assert_close(cas_loss(s, y, 0.3, ignore_index=ignore_index, reduction="none"),
                                       cas_eq1(s, y, 0.3, void=ignore_index), rtol=0, atol=1e-12)
            U, D = cas_terms(s, y, ignore_index=ignore_index)
            torch.testing.assert_close(0.3 * U - 0.7 * D, cas_eq1(s, y, 0.3, void=ignore_index), rtol=0, atol=1e-12)
        torch.testing.assert_close(cas_loss(s, y, 0.3, reduction="none"), cas_eq1(s, y, 0.3, void=255),
                                   rtol=0, atol=1e-12)


class TestSelectChannelOffset:
    def test_a_constant_added_to_a_channel_does_not_change_the_choice(self):
        # channel 0 follows the mask exactly (correlation 1) on top of a constant; channel 1 follows it
        # with correlation 0.98. Pearson correlation centres each channel, so the constant cannot
        # matter; an uncentred (or wrongly centred, s + mean) norm grows with it and would pick 1.
        mask = torch.tensor([[[0, 0, 1, 1, 0, 1]]])
        other = torch.tensor([0.1, 0.2, 0.9, 0.8, 0.15, 0.7], dtype=torch.float64)
        for offset in (0.0, 0.45, 0.9):
            probs = torch.stack([offset + 0.05 * mask[0, 0].double(), other])[None, :, None, :]
            assert select_channel(probs, mask) == 0, offset
            assert select_channel(probs.flip(1), mask) == 1, offset


class TestRelabelProbability:
    def test_an_image_is_relabelled_iff_its_uniform_draw_is_strictly_below_p(self):
        # P(relabel) = p exactly: image b is relabelled iff its draw u_b < p, so a draw equal to p is
        # kept (and p = 0 never relabels, even a draw of exactly 0.0). The flips are the generator's
        # first B uniforms; p is set to one of them to test the tie.
        B = 8
        u = torch.rand(B, generator=torch.Generator().manual_seed(9))
        y = torch.tensor([[[0, 1]]]).expand(B, 1, 2)
        for b in range(B):
            p = float(u[b])
            _, perms = permute_region_labels(y, 2, p=p, generator=torch.Generator().manual_seed(9))
            assert (perms[:, 0] == 1).tolist() == (u < p).tolist(), b
            assert int(perms[b, 0]) == 0


class TestUint8Labels:
    def test_uint8_labels_with_void_255_give_the_int64_results(self):
        # label masks are often stored as uint8 with 255 = void (VOC); the results must not depend on it
        s = random_probs(B=2, M=3, H=3, W=4, seed=52)
        y = torch.tensor([[[0, 0, 1, 1], [0, 255, 1, 1], [255, 255, 0, 1]],
                          [[1, 1, 1, 0], [1, 255, 0, 0], [0, 0, 0, 255]]])
        for variant in ("paper", "official"):
            torch.testing.assert_close(cas_loss(s, y.to(torch.uint8), 0.3, variant=variant, reduction="none"),
                                       cas_loss(s, y, 0.3, variant=variant, reduction="none"), rtol=0, atol=0)
        torch.testing.assert_close(cas_loss(s, y.to(torch.uint8), 0.3, reduction="none"), cas_eq1(s, y, 0.3, void=255),
                                   rtol=0, atol=1e-12)
        new8, perms8 = permute_region_labels(y.to(torch.uint8), 2, p=1.0, generator=torch.Generator().manual_seed(3))
        new, perms = permute_region_labels(y, 2, p=1.0, generator=torch.Generator().manual_seed(3))
        assert new8.dtype == torch.int64 and torch.equal(new8, new) and torch.equal(perms8, perms)
        assert torch.equal(new, torch.where(y == 255, y, 1 - y))
