import os

import numpy as np
import pytest
import torch

from pixelbook import runtime


class TestResolveScale:
    @pytest.mark.parametrize("name", ["smoke", "small", "full", "SMALL", " smoke "])
    def test_concrete_names_pass_through(self, name):
        assert runtime.resolve_scale(name) == name.strip().lower()

    def test_auto_is_small_without_cuda(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        assert runtime.resolve_scale("auto") == "small"

    def test_auto_is_full_with_cuda(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert runtime.resolve_scale("auto") == "full"

    def test_none_reads_environment(self, monkeypatch):
        monkeypatch.setenv("PIXELBOOK_SCALE", "smoke")
        assert runtime.resolve_scale(None) == "smoke"

    def test_unknown_name_is_an_error(self):
        with pytest.raises(ValueError, match="`scale`: expected one of"):
            runtime.resolve_scale("medium")

    def test_scaled_picks_by_scale(self):
        assert runtime.scaled("small", smoke=1, small=2, full=3) == 2
        with pytest.raises(ValueError, match="`scale`"):
            runtime.scaled("auto", smoke=1, small=2, full=3)


class TestResolveDevice:
    def test_auto_prefers_cuda_then_mps_then_cpu(self, monkeypatch):
        monkeypatch.delenv("PIXELBOOK_DEVICE", raising=False)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
        assert runtime.resolve_device("auto").type == "cpu"
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
        assert runtime.resolve_device("auto").type == "mps"
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert runtime.resolve_device("auto").type == "cuda"

    def test_environment_overrides_auto_only(self, monkeypatch):
        monkeypatch.setenv("PIXELBOOK_DEVICE", "cpu")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert runtime.resolve_device("auto").type == "cpu"
        assert runtime.resolve_device(torch.device("cpu")).type == "cpu"

    def test_unknown_device_is_an_error(self):
        with pytest.raises(ValueError, match="`device`: expected"):
            runtime.resolve_device("gpu0")

    def test_unavailable_cuda_is_an_error_not_a_fallback(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        with pytest.raises(ValueError, match="CUDA is not available"):
            runtime.resolve_device("cuda")


class TestSeedAll:
    def test_same_seed_same_numbers(self):
        runtime.seed_all(3)
        a = (torch.rand(3), np.random.rand(3))
        runtime.seed_all(3)
        b = (torch.rand(3), np.random.rand(3))
        assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])

    def test_deterministic_flags_are_set(self):
        runtime.seed_all(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        torch.use_deterministic_algorithms(False)

    def test_returns_seeded_generator(self):
        g1, g2 = runtime.seed_all(5), runtime.seed_all(5)
        assert torch.equal(torch.rand(2, generator=g1), torch.rand(2, generator=g2))
        torch.use_deterministic_algorithms(False)

    def test_non_integer_seed_is_an_error(self):
        with pytest.raises(TypeError, match="`seed`"):
            runtime.seed_all(1.5)


def test_cache_dir_honours_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path))
    path = runtime.cache_dir("checkpoints")
    assert path == os.path.join(str(tmp_path), "checkpoints") and os.path.isdir(path)


def test_env_report_names_versions_scale_and_time():
    text = runtime.env_report(start_time=0.0, scale="small", device="cpu")
    assert "torch" in text and "scale        small" in text and "run time" in text
