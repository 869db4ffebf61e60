"""Every loss has a functional form and an ``nn.Module`` that stores its options and calls it."""

import pytest
import torch

import pixelbook.losses as L

f64 = torch.float64


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _seg_inputs():
    logits = torch.randn(2, 3, 16, 16, generator=_g(1))
    labels = torch.randint(0, 3, (2, 16, 16), generator=_g(2))
    labels[0, :2] = 255
    return logits, labels


def _unit(x):
    return torch.nn.functional.normalize(x, dim=1)


CASES = {
    "segmentation": (L.SegmentationLoss(reduction="sum"), lambda a: L.segmentation_loss(*a, reduction="sum"),
                     _seg_inputs),
    "affinity": (L.AffinityLoss(margin=2.0, dilation=2), lambda a: L.affinity_loss(*a, margin=2.0, dilation=2),
                 _seg_inputs),
    "symmetric_ce": (L.SymmetricCrossEntropy(reduction="none"),
                     lambda a: L.symmetric_cross_entropy(*a, reduction="none"),
                     lambda: (torch.randn(2, 3, 8, 8, generator=_g(3)), torch.randint(0, 2, (2, 8, 8), generator=_g(4)))),
    "balanced_bce": (L.BalancedBCELoss(reduction="sum"), lambda a: L.balanced_bce_loss(*a, reduction="sum"),
                     lambda: (torch.randn(2, 1, 8, 8, generator=_g(5)),
                              (torch.rand(2, 8, 8, generator=_g(6)) > 0.8).float(),
                              torch.rand(2, 8, 8, generator=_g(7)) > 0.2)),
    "boundary": (L.BoundaryLoss(), lambda a: L.boundary_loss(*a),
                 lambda: ([torch.randn(2, 1, 8, 8, generator=_g(s)) for s in range(3)],
                          (torch.rand(2, 8, 8, generator=_g(8)) > 0.8).float())),
    "log_depth": (L.LogDepthLoss(gamma=1.5), lambda a: L.log_depth_loss(*a, gamma=1.5),
                  lambda: (torch.randn(2, 1, 8, 8, generator=_g(9)), torch.rand(2, 1, 8, 8, generator=_g(10)) + 0.5)),
    "normals": (L.NormalLoss(lam=2.0, reduction="none"), lambda a: L.normal_loss(*a, lam=2.0, reduction="none"),
                lambda: (torch.randn(2, 3, 8, 8, generator=_g(11)), _unit(torch.randn(2, 3, 8, 8, generator=_g(12))))),
    "narrow_band": (L.NarrowBandLoss(scale=2.0), lambda a: L.narrow_band_loss(*a, scale=2.0),
                    lambda: (torch.randn(2, 1, 8, 8, generator=_g(13)) * 3, torch.randn(2, 1, 8, 8, generator=_g(14)) * 3)),
    "rmi": (L.RMILoss(radius=2, pool_size=2), lambda a: L.rmi_loss(*a, radius=2, pool_size=2), _seg_inputs),
    "cas": (L.CASLoss(alpha=0.3, from_logits=False), lambda a: L.cas_loss(*a, alpha=0.3),
            lambda: (torch.rand(2, 3, 8, 8, generator=_g(15)).softmax(1),
                     torch.randint(0, 2, (2, 8, 8), generator=_g(16)))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_module_equals_function(name):
    module, function, make = CASES[name]
    args = make()
    out = module(*args)
    assert torch.is_tensor(out)
    torch.testing.assert_close(out, function(args), rtol=0, atol=0)


def test_multitask_module_equals_function():
    outputs = {"seg": torch.randn(2, 3, 8, 8, generator=_g(1)),
               "depth": torch.randn(2, 1, 8, 8, generator=_g(2))}
    batch = {"labels": torch.randint(0, 3, (2, 8, 8), generator=_g(3)),
             "depth": torch.rand(2, 1, 8, 8, generator=_g(4)) + 0.5}
    weights = {"seg": 2.0, "depth": 0.5}
    total = L.MultitaskLoss(weights)(outputs, batch)
    torch.testing.assert_close(total, L.multitask_loss(outputs, batch, weights), rtol=0, atol=0)


def test_every_loss_is_exported_in_pairs():
    functions = [n for n in L.__all__ if n.endswith("_loss") or n == "symmetric_cross_entropy"]
    modules = {n for n in L.__all__ if n[0].isupper() and not n.isupper()}
    assert len(functions) == len(modules) == 14
    for name in L.__all__:
        assert hasattr(L, name)
