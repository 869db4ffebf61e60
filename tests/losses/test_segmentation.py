"""Tests of pixelbook.losses.segmentation: cross-entropy, the affinity baseline, symmetrised CE."""

import itertools
import math

import pytest
import torch

import fakes
import torch.nn.functional as F

from pixelbook.cas import permute_region_labels
from pixelbook.losses import SymmetricCrossEntropy, affinity_loss, segmentation_loss, symmetric_cross_entropy
from pixelbook.ops import canonical_regions

f64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


_probs, _partition = fakes.random_probs, fakes.random_partition


class TestSegmentationLoss:
    def test_uniform_logits_give_log_k(self):
        assert segmentation_loss(torch.zeros(2, 5, 3, 3), torch.zeros(2, 3, 3, dtype=torch.long)).item() == pytest.approx(math.log(5))

    def test_hand_computed_pixel(self):
        logits = torch.tensor([2.0, 0.0]).view(1, 2, 1, 1)
        expected = -math.log(math.exp(0) / (math.exp(2) + 1))  # label 1
        assert segmentation_loss(logits, torch.ones(1, 1, 1, dtype=torch.long)).item() == pytest.approx(expected)

    def test_ignore_index_pixels_count_for_nothing(self):
        logits = torch.randn(1, 3, 2, 2)
        labels = torch.tensor([[[0, 255], [255, 255]]])
        assert segmentation_loss(logits, labels).item() == pytest.approx(
            F.cross_entropy(logits[:, :, 0, 0], labels[:, 0, 0]).item())

    def test_all_void_is_zero_not_nan(self):
        logits = torch.randn(1, 3, 2, 2, requires_grad=True)
        loss = segmentation_loss(logits, torch.full((1, 2, 2), 255))
        loss.backward()
        assert loss.item() == 0 and torch.all(logits.grad == 0)

    def test_errors_name_the_argument(self):
        with pytest.raises(ValueError, match="`labels`: expected H=4"):
            segmentation_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, dtype=torch.long))
        with pytest.raises(ValueError, match=r"`labels`: expected labels in \[0, 3\)"):
            segmentation_loss(torch.zeros(1, 3, 2, 2), torch.full((1, 2, 2), 7))
        with pytest.raises(TypeError, match="`labels`: expected an integer tensor"):
            segmentation_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2))
        with pytest.raises(ValueError, match="`logits`: expected finite"):
            segmentation_loss(torch.full((1, 3, 2, 2), float("nan")), torch.zeros(1, 2, 2, dtype=torch.long))


class TestAffinityLoss:
    def test_hand_computed_two_pixel_values(self):
        # 1x2 image, two classes. Each pixel has exactly one neighbour (the other pixel).
        logits = torch.tensor([[[[0.0, 0.0]], [[0.0, math.log(3.0)]]]])  # p_a = (.5, .5), p_b = (.25, .75)
        kl_ab = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
        kl_ba = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
        same = torch.zeros(1, 1, 2, dtype=torch.long)
        assert float(affinity_loss(logits, same)) == pytest.approx((kl_ab + kl_ba) / 2, abs=1e-6)
        diff = torch.tensor([[[0, 1]]])
        expected = (max(0, 3 - kl_ab) + max(0, 3 - kl_ba)) / 2
        assert float(affinity_loss(logits, diff, margin=3.0)) == pytest.approx(expected, abs=1e-6)

    def test_zero_for_uniform_labels_and_identical_predictions(self):
        assert float(affinity_loss(torch.randn(1, 3, 1, 1).expand(1, 3, 6, 6), torch.ones(1, 6, 6, dtype=torch.long))) == pytest.approx(0.0, abs=1e-7)

    def test_void_pairs_are_ignored(self):
        logits = torch.randn(1, 2, 6, 6, generator=_gen(50))
        labels = torch.randint(0, 2, (1, 6, 6), generator=_gen(51))
        all_void = torch.full_like(labels, 255)
        assert float(affinity_loss(logits, all_void)) == 0.0
        changed = logits.clone()
        labels2 = labels.clone()
        labels2[0, :, 3:] = 255
        changed[0, :, :, 4:] = 10 * torch.randn(2, 6, 2, generator=_gen(52))  # only touches void-only pairs
        assert float(affinity_loss(changed, labels2)) == pytest.approx(float(affinity_loss(logits, labels2)), abs=1e-6)

    def test_gradcheck_float64(self):
        logits = torch.randn(1, 3, 5, 5, dtype=f64, generator=_gen(53), requires_grad=True)
        labels = torch.randint(0, 3, (1, 5, 5), generator=_gen(54))
        assert torch.autograd.gradcheck(lambda x: affinity_loss(x, labels, margin=50.0), (logits,))

    def test_error_names_argument(self):
        with pytest.raises(ValueError, match="`labels`: expected W=8"):
            affinity_loss(torch.rand(1, 2, 8, 8), torch.zeros(1, 8, 7, dtype=torch.long))


def _naive_cace(logits, labels, M):
    """min over injective relabellings of full cross-entropies, one image at a time."""
    out = []
    for z, y in zip(logits, labels):
        ids, n = canonical_regions(y[None])
        n = int(n)
        out.append(min(F.cross_entropy(z[None], torch.tensor(p)[ids]) for p in itertools.permutations(range(M), n)))
    return torch.stack(out)


class TestSymmetricCrossEntropy:
    @pytest.mark.parametrize("N,M", [(2, 2), (3, 3), (2, 4), (4, 4)])
    def test_equals_naive_min_over_labellings(self, N, M):
        logits, y = torch.randn(3, M, 4, 5, dtype=torch.float64), _partition(B=3, H=4, W=5, N=N, seed=N)
        torch.testing.assert_close(symmetric_cross_entropy(logits, y, reduction="none"), _naive_cace(logits, y, M))

    def test_invariant_to_relabelling_per_image_bit_for_bit(self):
        logits, y = torch.randn(4, 3, 6, 6), _partition(B=4, H=6, W=6, N=3, seed=2)
        y_perm, _ = permute_region_labels(y, 3, p=1.0, generator=torch.Generator().manual_seed(0))
        assert torch.equal(symmetric_cross_entropy(logits, y), symmetric_cross_entropy(logits, y_perm))
        assert not torch.equal(F.cross_entropy(logits, y), F.cross_entropy(logits, y_perm))

    def test_equals_cross_entropy_when_labels_already_best(self):
        y = _partition(B=2, N=3, seed=3)
        logits = 5 * F.one_hot(y, 3).permute(0, 3, 1, 2).double() + 0.1 * torch.randn(2, 3, 5, 6, dtype=torch.float64)
        torch.testing.assert_close(symmetric_cross_entropy(logits, y), F.cross_entropy(logits, y))

    def test_hungarian_equals_enumeration_value_and_gradient(self):
        y = _partition(B=3, H=4, W=4, N=4, seed=5)
        z1 = torch.randn(3, 5, 4, 4, dtype=torch.float64, requires_grad=True)
        z2 = z1.detach().clone().requires_grad_()
        a = symmetric_cross_entropy(z1, y, method="enumerate")
        b = symmetric_cross_entropy(z2, y, method="hungarian")
        torch.testing.assert_close(a, b)
        a.backward()
        b.backward()
        torch.testing.assert_close(z1.grad, z2.grad)

    def test_gradient_is_that_of_the_chosen_labelling(self):
        z = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
        y = _partition(B=1, H=4, W=4, N=2)
        symmetric_cross_entropy(z, y).backward()
        best = min((F.cross_entropy(z, y), F.cross_entropy(z, 1 - y)), key=lambda t: float(t.detach()))
        (g,) = torch.autograd.grad(best, z)
        torch.testing.assert_close(z.grad, g)

    def test_module_equals_function(self):
        z, y = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
        torch.testing.assert_close(SymmetricCrossEntropy(reduction="sum")(z, y),
                                   symmetric_cross_entropy(z, y, reduction="sum"))

    def test_error_names_argument(self):
        with pytest.raises(ValueError, match="has 3 regions but `logits` has only M=2"):
            symmetric_cross_entropy(torch.randn(1, 2, 2, 2), torch.tensor([[[0, 1], [2, 2]]]))
        with pytest.raises(ValueError, match="`method`"):
            symmetric_cross_entropy(torch.randn(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), method="greedy")
        with pytest.raises(ValueError, match="`labels`: expected W=2"):
            symmetric_cross_entropy(torch.randn(1, 2, 2, 2), torch.zeros(1, 2, 3, dtype=torch.long))

    def test_an_all_void_image_counts_zero_and_leaves_the_mean(self):
        z = torch.randn(2, 2, 3, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
        y = torch.tensor([[[0, 1, 1], [0, 0, 1], [1, 1, 0]], [[255] * 3] * 3])
        per_image = symmetric_cross_entropy(z, y, reduction="none")
        assert per_image[1] == 0 and per_image[0] > 0
        torch.testing.assert_close(symmetric_cross_entropy(z, y), per_image[0])       # mean over labelled images
        torch.testing.assert_close(symmetric_cross_entropy(z, y), symmetric_cross_entropy(z[:1], y[:1]))
