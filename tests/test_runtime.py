import os

import numpy as np
import pytest
import torch

from pixelbook import runtime


class TestResolveScale:
    @pytest.mark.parametrize("name", ["smoke", "small", "medium", "full", "SMALL", " smoke ", "Medium"])
    def test_concrete_names_pass_through(self, name):
        assert runtime.resolve_scale(name) == name.strip().lower()

    def test_auto_is_small_without_cuda(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        assert runtime.resolve_scale("auto") == "small"

    def test_auto_is_medium_with_cuda_never_full(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert runtime.resolve_scale("auto") == "medium"

    def test_full_only_when_asked_by_name(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setenv("PIXELBOOK_SCALE", "auto")
        assert runtime.resolve_scale(None) == "medium"
        monkeypatch.setenv("PIXELBOOK_SCALE", "full")
        assert runtime.resolve_scale(None) == "full"

    def test_none_reads_environment(self, monkeypatch):
        monkeypatch.setenv("PIXELBOOK_SCALE", "smoke")
        assert runtime.resolve_scale(None) == "smoke"

    def test_unknown_name_is_an_error(self):
        with pytest.raises(ValueError, match="`scale`: expected one of"):
            runtime.resolve_scale("large")

    def test_scales_are_ordered_cheapest_first(self):
        assert runtime.SCALES == ("smoke", "small", "medium", "full")

    def test_scaled_picks_by_scale(self):
        values = dict(smoke=1, small=2, medium=3, full=4)
        assert [runtime.scaled(s, **values) for s in runtime.SCALES] == [1, 2, 3, 4]
        with pytest.raises(ValueError, match="`scale`"):
            runtime.scaled("auto", **values)

    def test_scaled_needs_only_the_value_in_use(self):
        assert runtime.scaled("small", smoke=1, small=2) == 2
        assert runtime.scaled("full", full=None) is None  # None is a value

    @pytest.mark.parametrize("scale", ["smoke", "small", "medium", "full"])
    def test_scaled_missing_value_names_the_scale(self, scale):
        others = {s: 0 for s in runtime.SCALES if s != scale}
        with pytest.raises(ValueError, match=f"no value for scale '{scale}'; pass {scale}="):
            runtime.scaled(scale, **others)

    def test_scaled_values_are_keywords_only(self):
        with pytest.raises(TypeError):
            runtime.scaled("small", 1, 2, 3)


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


def test_env_info_is_json_serialisable_provenance():
    import json

    info = runtime.env_info("cpu")
    assert json.loads(json.dumps(info)) == info
    assert info["device"] == "cpu" and info["torch_threads"] == torch.get_num_threads()
    assert info["versions"]["torch"] == torch.__version__
