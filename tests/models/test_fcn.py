"""Tests of pixelbook.models.fcn: the two CPU-sized FCNs and the paper's torchvision models."""

import pytest
import torch

from pixelbook.models import paper_model, resnet_fcn, small_fcn


class TestSmallAndResnetFcn:
    def test_shapes_and_sizes(self):
        torch.manual_seed(0)
        assert small_fcn(3)(torch.rand(2, 3, 20, 24)).shape == (2, 3, 20, 24)
        net = resnet_fcn(2)
        assert net(torch.rand(2, 3, 24, 32)).shape == (2, 2, 24, 32)
        from torchvision.models.segmentation.fcn import FCN

        assert isinstance(net.fcn, FCN)
        assert sum(p.numel() for p in small_fcn(2).parameters()) < 10_000
        assert sum(p.numel() for p in net.parameters()) < 500_000

    def test_resnet_fcn_keeps_the_trunk_up_to_layer2_only(self):
        from torchvision.models import resnet
        from torchvision.models.segmentation.fcn import FCNHead

        net = resnet_fcn(3, blocks=(2, 1))
        keys = list(net.state_dict())
        assert not any(k.startswith(("fcn.backbone.layer3", "fcn.backbone.layer4", "fcn.backbone.fc")) for k in keys)
        trunk = resnet.ResNet(resnet.BasicBlock, [2, 1, 1, 1])
        kept = [trunk.conv1, trunk.bn1, trunk.layer1, trunk.layer2, FCNHead(128, 3)]
        assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for m in kept for p in m.parameters())


class TestPaperModel:
    def test_torchvision_fcn_resnet101_randomly_initialised_returns_a_tensor(self):
        torch.manual_seed(0)
        net = paper_model("fcn_resnet101", 2).eval()
        with torch.no_grad():
            assert net(torch.rand(1, 3, 32, 32)).shape == (1, 2, 32, 32)
        assert sum(p.numel() for p in net.parameters()) > 30_000_000
        with pytest.raises(ValueError, match="`name`"):
            paper_model("unet")
