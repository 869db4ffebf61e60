"""pixelbook.ops.filter_flow: per-pixel filters, three implementations, expected flow.

The Triton implementation runs compiled on CUDA when a GPU is present, and in Triton's CPU
interpreter otherwise (``TRITON_INTERPRET=1`` must be set before the kernels are first imported,
hence at the top of this file). Interpreter cases are kept tiny.
"""

import os

import torch

if not torch.cuda.is_available():  # no GPU: the Triton kernels run in the interpreter, on the CPU
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pixelbook.ops import filter_flow as ff  # noqa: E402

TRITON = ff._triton_available()
needs_triton = pytest.mark.skipif(not TRITON, reason="triton is not installed")
IMPLS = [pytest.param("reference"), pytest.param("lean"), pytest.param("triton", marks=needs_triton)]
# The Triton path needs CUDA tensors unless it is interpreted.
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _device(impl):
    return TRITON_DEVICE if impl == "triton" else "cpu"


def _one_hot(N, k, H, W, dy, dx, dtype=torch.float32):
    r = k // 2
    filters = torch.zeros(N, k * k, H, W, dtype=dtype)
    filters[:, (dy + r) * k + (dx + r)] = 1.0
    return filters


def _shift(image, dy, dx):
    """Hand-built ``out[y, x] = image[y + dy, x + dx]``, zero outside: pad, then crop."""
    H, W = image.shape[-2:]
    p = max(abs(dy), abs(dx))
    padded = F.pad(image, (p, p, p, p))
    return padded[..., p + dy:p + dy + H, p + dx:p + dx + W]


class TestApplyFilterFlow:
    @pytest.mark.parametrize("impl", IMPLS)
    def test_identity_filter_reproduces_the_image(self, impl):
        device = _device(impl)
        image = torch.rand(2, 3, 6, 5, device=device)
        for k in (1, 3, 5):
            out = ff.apply_filter_flow(image, _one_hot(2, k, 6, 5, 0, 0).to(device), impl=impl)
            assert torch.equal(out, image), k

    @pytest.mark.parametrize("impl", IMPLS)
    @pytest.mark.parametrize("dy,dx,dilation", [(0, 1, 1), (-1, 0, 1), (1, -1, 2), (-2, 2, 1), (2, 1, 3)])
    def test_one_hot_offset_shifts_the_image(self, impl, dy, dx, dilation):
        device = _device(impl)
        image = torch.rand(1, 2, 7, 8, device=device)
        filters = _one_hot(1, 5, 7, 8, dy, dx).to(device)
        out = ff.apply_filter_flow(image, filters, dilation=dilation, impl=impl)
        expected = _shift(image, dy * dilation, dx * dilation)
        assert torch.equal(out, expected)
        # zero padding: the pixels that read outside the image are exactly zero
        if dx * dilation > 0:
            assert torch.all(out[..., -dx * dilation:] == 0)

    def test_hand_computed_values(self):
        # 1×1×2×2 image [[1, 2], [3, 4]], k = 3, pixel (0, 0) weights: centre 0.5, right 0.25, below 0.25
        image = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
        filters = torch.zeros(1, 9, 2, 2)
        filters[0, 4, 0, 0], filters[0, 5, 0, 0], filters[0, 7, 0, 0] = 0.5, 0.25, 0.25
        filters[0, 0, 1, 1] = 2.0  # pixel (1, 1) reads its upper-left neighbour (0, 0) twice
        filters[0, 8, 1, 1] = 7.0  # ... and (2, 2), outside: zero padding
        for impl in ("reference", "lean"):
            out = ff.apply_filter_flow(image, filters, impl=impl)
            expected = torch.tensor([[[[0.5 * 1 + 0.25 * 2 + 0.25 * 3, 0.0], [0.0, 2.0 * 1]]]])
            torch.testing.assert_close(out, expected)

    @pytest.mark.parametrize("impl", IMPLS)
    @pytest.mark.parametrize("k,dilation", [(3, 1), (5, 2)])
    def test_constant_filter_equals_conv2d(self, impl, k, dilation):
        device = _device(impl)
        torch.manual_seed(0)
        image = torch.randn(2, 3, 9, 7, device=device, dtype=torch.float64)
        kernel = torch.randn(k, k, device=device, dtype=torch.float64)
        filters = kernel.reshape(1, k * k, 1, 1).expand(2, k * k, 9, 7)
        out = ff.apply_filter_flow(image, filters, dilation=dilation, impl=impl)
        weight = kernel.expand(3, 1, k, k)  # depthwise: the same kernel for every channel
        expected = F.conv2d(image, weight, padding=(k // 2) * dilation, dilation=dilation, groups=3)
        torch.testing.assert_close(out, expected)

    @pytest.mark.parametrize("impl", IMPLS)
    def test_softmax_filters_stay_within_the_local_envelope(self, impl):
        device = _device(impl)
        torch.manual_seed(1)
        k, d = 5, 2
        image = torch.rand(2, 3, 8, 9, device=device)
        filters = torch.softmax(3 * torch.randn(2, k * k, 8, 9, device=device), dim=1)
        out = ff.apply_filter_flow(image, filters, dilation=d, impl=impl)
        # the window of each pixel, zeros outside the image included (zero padding)
        padded = F.pad(image, [(k // 2) * d] * 4)
        high = F.max_pool2d(padded, k, stride=1, dilation=d)
        low = -F.max_pool2d(-padded, k, stride=1, dilation=d)
        assert high.shape == out.shape
        assert torch.all(out <= high + 1e-6) and torch.all(out >= low - 1e-6)
        # and they are strictly inside for these random filters (the envelope is not trivially loose)
        assert float((high - out).min()) < 0.05 or float((out - low).min()) < 0.05

    @pytest.mark.parametrize("impl", IMPLS)
    def test_softmax_filters_keep_a_constant_image_constant_away_from_the_border(self, impl):
        device = _device(impl)
        image = torch.full((1, 2, 9, 9), 0.7, device=device)
        filters = torch.softmax(torch.randn(1, 9, 9, 9, device=device), dim=1)
        out = ff.apply_filter_flow(image, filters, impl=impl)
        torch.testing.assert_close(out[..., 1:-1, 1:-1], image[..., 1:-1, 1:-1])

    @pytest.mark.parametrize("impl", [p for p in IMPLS if p.values[0] != "reference"])
    @pytest.mark.parametrize("shape,k,dilation", [
        ((2, 3, 5, 7), 3, 1),
        ((1, 20, 6, 5), 5, 2),    # more channels than one Triton channel block (16)
        ((2, 1, 4, 4), 1, 1),
        ((1, 2, 9, 3), 3, 3),     # offsets wider than the image: taps entirely outside
    ])
    def test_implementations_agree_with_the_reference_values_and_gradients(self, impl, shape, k, dilation):
        device = _device(impl)
        torch.manual_seed(2)
        N, C, H, W = shape
        image = torch.randn(N, C, H, W, dtype=torch.float64, requires_grad=True)
        filters = torch.randn(N, k * k, H, W, dtype=torch.float64, requires_grad=True)
        grad = torch.randn(N, C, H, W, dtype=torch.float64)
        out_ref = ff.apply_filter_flow(image, filters, dilation=dilation, impl="reference")
        gi_ref, gf_ref = torch.autograd.grad(out_ref, (image, filters), grad)
        x, f = image.detach().to(device).requires_grad_(), filters.detach().to(device).requires_grad_()
        out = ff.apply_filter_flow(x, f, dilation=dilation, impl=impl)
        gi, gf = torch.autograd.grad(out, (x, f), grad.to(device))
        torch.testing.assert_close(out.cpu(), out_ref)
        torch.testing.assert_close(gi.cpu(), gi_ref)
        torch.testing.assert_close(gf.cpu(), gf_ref)

    @pytest.mark.parametrize("impl", IMPLS)
    def test_float32_implementations_agree(self, impl):
        device = _device(impl)
        torch.manual_seed(3)
        image = torch.rand(1, 3, 11, 10)
        filters = torch.softmax(torch.randn(1, 49, 11, 10), dim=1)
        out_ref = ff._apply_filter_flow_reference(image.double(), filters.double(), 1)
        out = ff.apply_filter_flow(image.to(device), filters.to(device), impl=impl)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out.cpu().double(), out_ref, atol=1e-6, rtol=1e-5)

    @pytest.mark.parametrize("impl", IMPLS)
    def test_gradcheck_float64(self, impl):
        device = _device(impl)
        torch.manual_seed(4)
        image = torch.randn(1, 2, 4, 5, dtype=torch.float64, device=device, requires_grad=True)
        filters = torch.randn(1, 9, 4, 5, dtype=torch.float64, device=device, requires_grad=True)
        fn = lambda x, f: ff.apply_filter_flow(x, f, dilation=2, impl=impl)  # noqa: E731
        # the interpreter is slow: a random-projection gradcheck for Triton (the agreement test above
        # compares its full gradients with the reference's)
        assert torch.autograd.gradcheck(fn, (image, filters), fast_mode=impl == "triton")

    def test_lean_supports_double_backward(self):
        torch.manual_seed(5)
        image = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
        filters = torch.randn(1, 9, 4, 4, dtype=torch.float64, requires_grad=True)
        fn = lambda x, f: ff.apply_filter_flow(x, f, impl="lean")  # noqa: E731
        assert torch.autograd.gradgradcheck(fn, (image, filters))

    def test_gradient_only_for_what_requires_it(self):
        image = torch.rand(1, 1, 4, 4, requires_grad=True)
        filters = torch.rand(1, 9, 4, 4)
        ff.apply_filter_flow(image, filters).sum().backward()
        assert image.grad is not None and filters.grad is None

    def test_lean_saves_only_its_inputs_for_backward(self):
        # the unfold reference keeps a k²-times larger tensor alive for backward; the lean path must not
        saved = []

        def pack(t):
            saved.append(t.numel())
            return t

        image = torch.rand(1, 3, 16, 16, requires_grad=True)
        filters = torch.rand(1, 121, 16, 16, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            ff._apply_filter_flow_lean(image, filters, 1)
        assert sum(saved) == image.numel() + filters.numel()
        saved.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            ff._apply_filter_flow_reference(image, filters, 1)
        assert max(saved) >= 3 * 121 * 16 * 16  # the unfolded columns, C·k² × H·W

    def test_noncontiguous_and_mixed_dtype_inputs(self):
        image = torch.rand(1, 6, 6, 3).permute(0, 3, 1, 2)  # (1, 3, 6, 6), channels last in memory
        filters = torch.softmax(torch.randn(1, 9, 6, 6, dtype=torch.float64), dim=1)
        for impl in ("reference", "lean"):
            out = ff.apply_filter_flow(image, filters, impl=impl)
            assert out.dtype == torch.float64
            torch.testing.assert_close(out, ff._apply_filter_flow_reference(image.double(), filters, 1))

    def test_output_follows_the_input_device_and_dtype(self, device):
        image = torch.rand(1, 2, 5, 5, device=device, dtype=torch.float64)
        out = ff.apply_filter_flow(image, _one_hot(1, 3, 5, 5, 0, 0, torch.float64).to(device))
        assert out.device == image.device and out.dtype == torch.float64


class TestDispatch:
    def test_auto_is_lean_on_the_cpu(self):
        assert ff.which_impl(torch.zeros(1, 1, 2, 2)) == "lean"
        assert ff.which_impl(torch.zeros(1, 1, 2, 2), "reference") == "reference"

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
    def test_auto_is_triton_on_cuda(self):
        assert ff.which_impl(torch.zeros(1, 1, 2, 2, device="cuda")) == ("triton" if TRITON else "lean")

    def test_the_choice_is_logged(self, caplog):
        with caplog.at_level("DEBUG", logger="pixelbook.ops"):
            ff.apply_filter_flow(torch.rand(1, 1, 3, 3), torch.rand(1, 9, 3, 3))
        assert "impl=lean" in caplog.text

    def test_unknown_impl_is_an_error(self):
        with pytest.raises(ValueError, match="`impl`: expected one of"):
            ff.apply_filter_flow(torch.rand(1, 1, 3, 3), torch.rand(1, 9, 3, 3), impl="cuda")


class TestExpectedFlow:
    @pytest.mark.parametrize("dy,dx,dilation", [(0, 0, 1), (1, -2, 1), (-2, 2, 3)])
    def test_one_hot_offset_has_that_flow(self, dy, dx, dilation):
        flow = ff.expected_flow(_one_hot(2, 5, 3, 4, dy, dx), dilation=dilation)
        assert flow.shape == (2, 2, 3, 4)
        assert torch.all(flow[:, 0] == dx * dilation) and torch.all(flow[:, 1] == dy * dilation)

    def test_is_the_mean_offset_of_a_two_tap_filter(self):
        filters = torch.zeros(1, 9, 1, 1)
        filters[0, 5] = 0.25  # (0, +1)
        filters[0, 1] = 0.75  # (-1, 0)
        flow = ff.expected_flow(filters)[0, :, 0, 0]
        torch.testing.assert_close(flow, torch.tensor([0.25, -0.75]))

    def test_symmetric_filter_has_zero_flow(self):
        kernel = torch.rand(5, 5)
        kernel = kernel + kernel.flip(0, 1)  # point symmetric
        flow = ff.expected_flow(kernel.reshape(1, 25, 1, 1))
        torch.testing.assert_close(flow, torch.zeros(1, 2, 1, 1))

    def test_flow_matches_the_shift_it_produces(self):
        # the flow points from an output pixel to where it reads: out(p) = image(p + flow)
        image = torch.rand(1, 1, 9, 9)
        filters = _one_hot(1, 5, 9, 9, 2, -1)
        out = ff.apply_filter_flow(image, filters)
        u, v = ff.expected_flow(filters)[0, :, 4, 4].tolist()
        assert out[0, 0, 4, 4] == image[0, 0, 4 + int(v), 4 + int(u)]


class TestBadInput:
    def test_wrong_rank(self):
        with pytest.raises(ValueError, match=r"`image`: expected shape \(N, C, H, W\)"):
            ff.apply_filter_flow(torch.rand(3, 8, 8), torch.rand(1, 9, 8, 8))

    def test_mismatched_sizes(self):
        with pytest.raises(ValueError, match="`filters`: expected H=8 \\(as in `image`\\), got 7"):
            ff.apply_filter_flow(torch.rand(1, 3, 8, 8), torch.rand(1, 9, 7, 8))
        with pytest.raises(ValueError, match="`filters`: expected N=2"):
            ff.apply_filter_flow(torch.rand(2, 3, 8, 8), torch.rand(1, 9, 8, 8))

    @pytest.mark.parametrize("taps", [4, 10, 16, 2])
    def test_channel_count_not_an_odd_square(self, taps):
        with pytest.raises(ValueError, match=f"`filters`: expected k\\*k channels with k odd .*got {taps}"):
            ff.apply_filter_flow(torch.rand(1, 1, 4, 4), torch.rand(1, taps, 4, 4))
        with pytest.raises(ValueError, match="`filters`: expected k\\*k channels"):
            ff.expected_flow(torch.rand(1, taps, 4, 4))

    def test_integer_tensors(self):
        with pytest.raises(TypeError, match="`image`: expected a floating-point tensor"):
            ff.apply_filter_flow(torch.ones(1, 1, 4, 4, dtype=torch.long), torch.rand(1, 9, 4, 4))
        with pytest.raises(TypeError, match="`filters`: expected a floating-point tensor"):
            ff.apply_filter_flow(torch.rand(1, 1, 4, 4), torch.ones(1, 9, 4, 4, dtype=torch.long))

    def test_not_a_tensor(self):
        with pytest.raises(TypeError, match="`image`: expected a torch.Tensor"):
            ff.apply_filter_flow([[1.0]], torch.rand(1, 9, 4, 4))

    def test_non_finite(self):
        filters = torch.rand(1, 9, 4, 4)
        filters[0, 3, 1, 2] = float("nan")
        with pytest.raises(ValueError, match="`filters`: expected finite values, got 1 NaN/Inf"):
            ff.apply_filter_flow(torch.rand(1, 1, 4, 4), filters)

    @pytest.mark.parametrize("dilation,error", [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                                (True, TypeError), ("2", TypeError)])
    def test_bad_dilation(self, dilation, error):
        with pytest.raises(error, match="`dilation`"):
            ff.apply_filter_flow(torch.rand(1, 1, 4, 4), torch.rand(1, 9, 4, 4), dilation=dilation)
        with pytest.raises(error, match="`dilation`"):
            ff.expected_flow(torch.rand(1, 9, 4, 4), dilation=dilation)

    def test_numpy_integer_dilation_is_accepted(self):
        np = pytest.importorskip("numpy")
        out = ff.apply_filter_flow(torch.rand(1, 1, 4, 4), torch.rand(1, 9, 4, 4), dilation=np.int64(2))
        assert out.shape == (1, 1, 4, 4)

    def test_triton_on_cpu_without_the_interpreter_is_a_clear_error(self):
        if not TRITON or ff._interpreting():
            pytest.skip("needs triton and a process without TRITON_INTERPRET")
        with pytest.raises(ValueError, match="impl='triton' needs CUDA tensors"):
            ff.apply_filter_flow(torch.rand(1, 1, 4, 4), torch.rand(1, 9, 4, 4), impl="triton")
