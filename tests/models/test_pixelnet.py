"""Tests of pixelbook.models.pixelnet: the dilated encoder and the multi-task PixelNet."""

import pytest
import torch

from pixelbook.models import PixelNet, TinyDilatedResNet, count_parameters


class TestTinyDilatedResNet:
    def test_output_stride_is_eight(self):
        feats = TinyDilatedResNet()(torch.rand(1, 3, 64, 48))
        assert [f.shape[-2:] for f in feats] == [(32, 24), (16, 12), (8, 6), (8, 6), (8, 6)]

    @staticmethod
    def _span(net):
        torch.manual_seed(0)
        x = torch.randn(1, 3, 256, 256, requires_grad=True)
        net.eval()(x)[-1][0, :, 16, 16].sum().backward()
        rows = (x.grad.abs().sum(1)[0] > 0).any(1).nonzero()
        return int(rows.max() - rows.min() + 1)

    def test_dilated_stages_grow_the_receptive_field(self):
        dilated = TinyDilatedResNet()
        plain = TinyDilatedResNet()
        for stage in (plain.stage4, plain.stage5):
            for conv in (stage.conv1, stage.conv2):
                conv.dilation, conv.padding = (1, 1), (1, 1)
        # each 3x3 conv of dilation d at stride 8 widens the receptive field by 2*d*8 input pixels:
        # stage 4 (two convs, d=2) adds 32 px more than plain, stage 5 (d=4) 96 px more: 128 in all
        assert self._span(dilated) - self._span(plain) == 128

    def test_wrong_number_of_widths_is_an_error(self):
        with pytest.raises(ValueError, match="`widths`"):
            TinyDilatedResNet((8, 8))


class TestPixelNet:
    def test_heads_return_full_resolution_outputs(self):
        net = PixelNet(num_classes=6).eval()
        out = net(torch.rand(2, 3, 40, 56))
        assert out["seg"].shape == (2, 6, 40, 56)
        assert out["depth"].shape == out["boundary"].shape == (2, 1, 40, 56)
        assert len(out["boundary_sides"]) == 5 and out["boundary_sides"][-1] is out["boundary"]
        assert torch.allclose(out["normals"].norm(dim=1), torch.ones(2, 40, 56), atol=1e-5)

    def test_single_task_model_has_only_its_head(self):
        net = PixelNet(num_classes=3, tasks=("seg",))
        assert set(net(torch.rand(1, 3, 16, 16))) == {"seg"}
        assert count_parameters(net) < count_parameters(PixelNet(num_classes=3))

    def test_predict_returns_metric_units(self):
        net = PixelNet(num_classes=4)
        pred = net.predict(torch.rand(1, 3, 16, 16))
        assert pred["seg"].dtype == torch.long and pred["seg"].shape == (1, 16, 16)
        assert (pred["depth"] > 0).all() and pred["boundary"].min() >= 0 and pred["boundary"].max() <= 1
        assert net.training  # predict restores the mode

    def test_resnet50_encoder_has_output_stride_eight(self):
        net = PixelNet(num_classes=3, tasks=("depth",), encoder="resnet50")
        feats = net.encoder(torch.rand(1, 3, 64, 64))
        assert feats[-1].shape[-2:] == (8, 8) and feats[-1].shape[1] == 2048

    @pytest.mark.parametrize("kwargs, match", [
        ({"tasks": ("flow",)}, "`tasks`"), ({"tasks": ()}, "`tasks`"), ({"encoder": "vgg"}, "`encoder`"),
        ({"num_classes": 1}, "`num_classes`"),
    ])
    def test_bad_arguments_are_errors(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            PixelNet(**{"num_classes": 3, **kwargs})

    def test_bad_image_shape_is_an_error(self):
        with pytest.raises(ValueError, match=r"`image`: expected shape \(N, 3, H, W\)"):
            PixelNet(num_classes=3)(torch.rand(1, 1, 16, 16))

    def test_weights_backbone_is_torchvision_style(self):
        with pytest.raises(ValueError, match="`weights_backbone`: the tiny encoder has no pre-trained weights"):
            PixelNet(3, encoder="tiny", weights_backbone="DEFAULT")
        with pytest.raises(ValueError, match="`weights_backbone`: expected None, a ResNet50_Weights or one of"):
            PixelNet(3, encoder="resnet50", weights_backbone="NO_SUCH_WEIGHTS")
