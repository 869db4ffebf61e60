"""Tests of pixelbook.data.files (the one image reader and pair discovery of the loaders) and of the
joint image/label transforms (pixelbook.data._joint), through every loader that uses them."""

import numpy as np
import pytest
import torch
from PIL import Image

import fakes
from pixelbook.data import bsds, instances, isic, msra10k, saliency, segmentation
from pixelbook.data._joint import apply_joint
from pixelbook.data.files import find_pairs, read_grey, read_label_map, read_raw_map, read_rgb


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path / "cache"))
    return tmp_path


class TestReadRgb:
    def test_exact_values_channels_first_in_unit_range(self, tmp_path):
        rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
        x = read_rgb(fakes.save_image(tmp_path / "a.png", rgb))
        assert x.shape == (3, 5, 7) and x.dtype == torch.float32
        assert torch.equal(x, torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)

    def test_grey_is_replicated_and_alpha_dropped(self, tmp_path):
        grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
        x = read_rgb(fakes.save_image(tmp_path / "g.png", grey))
        assert torch.equal(x[0], x[2]) and torch.equal(x[1] * 255, torch.from_numpy(grey).float())
        rgba = np.zeros((2, 2, 4), dtype=np.uint8)
        rgba[..., 1], rgba[..., 3] = 200, 10
        assert read_rgb(fakes.save_image(tmp_path / "a.png", rgba))[1].eq(200 / 255).all()

    def test_unreadable_file_is_a_value_error_naming_it(self, tmp_path):
        bad = tmp_path / "broken.jpg"
        bad.write_bytes(b"\xff\xd8 not really a jpeg" * 3)
        with pytest.raises(ValueError, match=r"broken.jpg': not a readable image"):
            read_rgb(bad)
        with pytest.raises(FileNotFoundError):
            read_rgb(tmp_path / "absent.png")

    def test_truncated_png_is_a_value_error(self, tmp_path):
        path = fakes.save_image(tmp_path / "t.png", np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
        path.write_bytes(path.read_bytes()[:400])
        with pytest.raises(ValueError, match="t.png': not a readable image"):
            read_rgb(path)


class TestReadGreyAndLabels:
    def test_grey_mask_and_rgb_mask_as_luminance(self, tmp_path):
        m = np.array([[0, 255], [127, 128]], dtype=np.uint8)
        assert torch.equal(read_grey(fakes.save_image(tmp_path / "m.png", m)), torch.from_numpy(m))
        rgb = np.repeat(m[..., None], 3, axis=2)
        assert torch.equal(read_grey(fakes.save_image(tmp_path / "m3.png", rgb)), torch.from_numpy(m))

    def test_palette_png_gives_indices_not_colours(self, tmp_path):
        labels = np.array([[0, 1, 2], [21, 255, 3]])
        path = tmp_path / "p.png"
        im = Image.fromarray(labels.astype(np.uint8), mode="L").convert("P")
        im.putpalette([v for i in range(256) for v in ((37 * i) % 256, (91 * i) % 256, 5)])  # colours != indices
        im.save(path)
        out = read_label_map(path)
        assert out.dtype == torch.int64 and out.tolist() == labels.tolist()

    def test_rgb_label_image_is_refused(self, tmp_path):
        path = fakes.save_image(tmp_path / "rgb.png", np.zeros((2, 3, 3), np.uint8))
        with pytest.raises(ValueError, match="rgb.png': expected a single-channel or palette label image"):
            read_label_map(path)


class TestReadRawMap:
    def test_sixteen_bit_values_as_stored(self, tmp_path):
        raw = np.array([[0, 1, 255], [256, 30000, 65535]], dtype=np.uint16)   # Cityscapes disparity: 16 bit
        path = tmp_path / "disparity.png"
        Image.fromarray(raw).save(path)
        out = read_raw_map(path)
        assert out.dtype == torch.int64 and out.tolist() == raw.astype(np.int64).tolist()

    def test_colour_image_is_refused(self, tmp_path):
        path = fakes.save_image(tmp_path / "rgb.png", np.zeros((2, 3, 3), np.uint8))
        with pytest.raises(ValueError, match="rgb.png': expected a single-channel image of raw values"):
            read_raw_map(path)


class TestFindPairs:
    def _touch(self, root, *names):
        for n in names:
            (root / n).parent.mkdir(parents=True, exist_ok=True)
            (root / n).touch()

    def test_pairs_by_name_sorted_and_images_without_mask_left_out(self, tmp_path):
        self._touch(tmp_path, "im/b.jpg", "im/a.jpg", "im/extra.jpg", "gt/a_seg.png", "gt/b_seg.png")
        pairs = find_pairs(tmp_path, "im/*.jpg", "gt/*.png", title="t", mask_suffix="_seg")
        assert [(i.name, m.name) for i, m in pairs] == [("a.jpg", "a_seg.png"), ("b.jpg", "b_seg.png")]

    def test_recursive_glob_skips_macos_forks_and_hidden_files(self, tmp_path):
        self._touch(tmp_path, "x/images/1.jpg", "x/gt/1.png", "__MACOSX/x/images/._1.jpg", "__MACOSX/x/gt/._1.png",
                    "x/gt/.hidden.png")
        pairs = find_pairs(tmp_path, "**/images/*.jpg", "**/gt/*.png", title="t")
        assert [(i.relative_to(tmp_path).as_posix(), m.name) for i, m in pairs] == [("x/images/1.jpg", "1.png")]

    def test_two_files_of_one_name_are_an_error_not_a_silent_choice(self, tmp_path):
        self._touch(tmp_path, "cat/Src/1.jpg", "cat/Src/1.png", "dog/Src/1.jpg", "dog/Src/1.png")
        with pytest.raises(FileNotFoundError, match=r"t: two files are called '1': .*cat/Src/1.jpg.*dog/Src/1.jpg"):
            find_pairs(tmp_path, "**/Src/*.jpg", "**/Src/*.png", title="t")

    def test_errors_name_the_layout(self, tmp_path):
        with pytest.raises(FileNotFoundError, match=r"`root`: .* is not a folder; expected images 'i/\*.jpg'"):
            find_pairs(tmp_path / "none", "i/*.jpg", "m/*.png", title="t")
        with pytest.raises(FileNotFoundError, match="t: no masks found"):
            find_pairs(tmp_path, "i/*.jpg", "m/*.png", title="t")
        self._touch(tmp_path, "m/9.png")
        with pytest.raises(FileNotFoundError, match=r"t: 1 masks have no image \(first: '9'\)"):
            find_pairs(tmp_path, "i/*.jpg", "m/*.png", title="t")

    def test_every_saliency_style_loader_uses_it(self, tmp_path, monkeypatch):
        """MSRA10K, the SOD sets (ECSSD, PASCAL-S, HKU-IS, DUTS, ...) and ISIC find their pairs in one place."""
        from pixelbook.data import files

        calls = []
        real = files.find_pairs

        def spy(*args, **kwargs):
            calls.append(kwargs["title"])
            return real(*args, **kwargs)

        for module in (saliency, msra10k, isic):
            monkeypatch.setattr(module, "find_pairs", spy)
        fakes.make_sod_folder(tmp_path / "sod", n=2)
        fakes.make_isic_folder(tmp_path / "isic", n=2)
        msra10k.MSRA10KDataset(tmp_path / "sod" / "msra10k", size=8)
        for name in ("ecssd", "pascal_s", "hku_is"):
            saliency.SaliencyDataset(name, tmp_path / "sod" / name, size=8)
        isic.ISIC2018(tmp_path / "isic", size=8)
        assert calls == ["MSRA10K", "dataset 'ecssd'", "dataset 'pascal_s'", "dataset 'hku_is'", "ISIC 2018"]


# ---------------------------------------------------------------------------------------------- loaders


def _bsds(tmp_path):
    root = fakes.make_bsds_folder(tmp_path)
    return bsds.BSDS500(root, split="test"), root / "BSR/BSDS500/data/images/test/100007.jpg"


def _camvid(tmp_path):
    base = fakes.make_camvid_folder(tmp_path)
    return segmentation.CamVid(tmp_path, split="test"), base / "test" / "test_0000.png"


def _voc(tmp_path):
    fakes.make_voc_sbd_folder(tmp_path)
    return segmentation.VOCAugSegmentation(tmp_path, split="val"), tmp_path / "VOCdevkit/VOC2012/JPEGImages/2007_000003.jpg"


def _voc_instances(tmp_path):
    fakes.make_voc_sbd_instances_folder(tmp_path)
    return instances.VOCInstances(tmp_path, split="val"), tmp_path / "VOCdevkit/VOC2012/JPEGImages/2007_000003.jpg"


def _ecssd(tmp_path):
    fakes.make_sod_folder(tmp_path, n=1)
    return saliency.SaliencyDataset("ecssd", tmp_path / "ecssd", size=8), tmp_path / "ecssd/images/0000.jpg"


def _msra10k(tmp_path):
    fakes.make_sod_folder(tmp_path, n=1)
    return msra10k.MSRA10KDataset(tmp_path / "msra10k", size=8), tmp_path / "msra10k/MSRA10K_Imgs_GT/Imgs/0000.jpg"


def _isic(tmp_path):
    fakes.make_isic_folder(tmp_path, n=1)
    return isic.ISIC2018(tmp_path, size=8), tmp_path / fakes.ISIC_INPUT / "ISIC_0000000.jpg"


LOADERS = {"bsds500": _bsds, "camvid": _camvid, "voc": _voc, "voc_instances": _voc_instances, "ecssd": _ecssd,
           "msra10k": _msra10k, "isic": _isic}


@pytest.mark.parametrize("loader", list(LOADERS))
def test_every_loader_names_an_unreadable_image(tmp_path, cache, loader):
    ds, image_file = LOADERS[loader](tmp_path / "data")
    ds[0]  # readable as built
    image_file.write_bytes(b"garbage, not an image" * 5)
    with pytest.raises(ValueError, match=f"'{image_file}': not a readable image"):
        ds[0]


class TestApplyJoint:
    def _pair(self):
        labels = torch.zeros(8, 12, dtype=torch.long)
        labels[1:4, 2:9] = 1
        labels[5:, 9:] = 2
        image = torch.stack([labels.float() / 2, torch.rand(8, 12, generator=torch.Generator().manual_seed(0)),
                             torch.zeros(8, 12)])
        return image, labels

    def test_flips_move_image_and_labels_together(self):
        from torchvision.transforms import v2

        image, labels = self._pair()
        t = v2.Compose([v2.RandomHorizontalFlip(0.5), v2.RandomVerticalFlip(0.5)])
        outcomes = set()
        g = torch.Generator().manual_seed(3)
        for _ in range(16):
            img, lab = apply_joint(t, image, labels, g)
            assert type(img) is torch.Tensor and type(lab) is torch.Tensor
            assert torch.equal(img[0] * 2, lab.float())  # channel 0 still encodes the labels
            outcomes.add((torch.equal(lab, labels.flip(-1)) or torch.equal(lab, labels.flip(-1, -2)),
                          torch.equal(lab, labels.flip(-2)) or torch.equal(lab, labels.flip(-1, -2))))
        assert len(outcomes) == 4  # all four flip combinations occur

    def test_resize_is_bilinear_for_the_image_and_nearest_for_labels(self):
        from torchvision.transforms import v2

        image, labels = self._pair()
        img, lab = apply_joint(v2.Resize((16, 24)), image, labels)
        assert set(lab.unique().tolist()) == {0, 1, 2}  # nearest: no new label values
        assert torch.equal(lab, labels.repeat_interleave(2, 0).repeat_interleave(2, 1))
        assert len(img[0].unique()) > 3  # bilinear: values between the label levels appear

    def test_generator_makes_it_reproducible_and_leaves_the_global_rng_alone(self):
        from torchvision.transforms import v2

        image, labels = self._pair()
        t = v2.RandomCrop((4, 4))
        state = torch.get_rng_state()
        a = [apply_joint(t, image, labels, torch.Generator().manual_seed(7)) for _ in range(2)]
        assert torch.equal(torch.get_rng_state(), state)
        assert torch.equal(a[0][0], a[1][0]) and torch.equal(a[0][1], a[1][1])


class TestLoaderResizing:
    def test_isic_downscaling_is_antialiased(self, tmp_path):
        """A 4x downscale of pixel noise averages it (std ~ 1/4 of the original) instead of
        sampling a few pixels (bilinear without antialiasing keeps ~1/2)."""
        rng = np.random.default_rng(0)
        inp, gt = tmp_path / fakes.ISIC_INPUT, tmp_path / fakes.ISIC_GT
        fakes.save_image(inp / "ISIC_0000000.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        (inp / "ISIC_0000000.png").rename(inp / "ISIC_0000000.jpg")  # lossless content, the layout's name
        fakes.save_image(gt / "ISIC_0000000_segmentation.png", fakes.isic_mask("disk", 64, 64))
        full = isic.ISIC2018(tmp_path, size=64, normalize=False)[0]["image"]
        small = isic.ISIC2018(tmp_path, size=16, normalize=False)[0]["image"]
        assert float(small.std()) < 0.35 * float(full.std())

    def test_saliency_mask_is_resized_by_nearest_neighbour(self, tmp_path):
        root = tmp_path / "duts"
        mask = np.zeros((8, 8), np.uint8)
        mask[::2, ::2] = 255  # a one-pixel grid: nearest keeps one pixel in four
        fakes.save_image(root / "DUTS-TE/DUTS-TE-Image/a.jpg", np.zeros((8, 8, 3), np.uint8))
        fakes.save_image(root / "DUTS-TE/DUTS-TE-Mask/a.png", mask)
        m = saliency.SaliencyDataset("duts_te", root, size=4)[0]["mask"]
        assert m.all()  # rows/columns 0, 2, 4, 6 are sampled
