"""Tests of the scalar validators in pixelbook._checks (check_int, check_float)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixelbook._checks import check_float, check_int


def test_check_int_accepts_integers_of_every_kind():
    assert check_int(3, "n") == 3 and check_int(np.int64(3), "n") == 3 and check_int(torch.tensor(3), "n") == 3
    assert type(check_int(np.int32(2), "n")) is int


@pytest.mark.parametrize("bad", [True, 2.0, 2.5, "3", None, torch.tensor(3.0)])
def test_check_int_rejects_non_integers(bad):
    with pytest.raises(TypeError, match="`epochs`: expected an integer"):
        check_int(bad, "epochs")


def test_check_int_range():
    with pytest.raises(ValueError, match=r"`k`: expected an integer in \[1, 5\], got 6"):
        check_int(6, "k", 1, 5)
    with pytest.raises(ValueError, match=r"`k`: expected an integer in \[0, inf\], got -1"):
        check_int(-1, "k", low=0)


def test_check_float():
    assert check_float(1, "x") == 1.0 and check_float(np.float32(0.5), "x") == 0.5
    assert check_float(torch.tensor(2.0), "x", 0, 3) == 2.0
    with pytest.raises(TypeError, match="`x`: expected a real number"):
        check_float(True, "x")
    with pytest.raises(ValueError, match=r"`x`: expected a finite number in \(0, inf\), got 0.0"):
        check_float(0.0, "x", 0.0, low_open=True)
    with pytest.raises(ValueError, match="`x`: expected a finite number"):
        check_float(float("nan"), "x")
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        check_float(1.5, "x", 0, 1)


def test_ignore_index_is_the_one_default_255():
    from pixelbook._checks import IGNORE_INDEX

    assert IGNORE_INDEX == 255


def test_check_finite_fast_path_keeps_exact_answers():
    import pytest
    import torch

    from pixelbook._checks import check_finite

    check_finite(torch.full((4,), 3e38), "x")  # the sum overflows to inf, every value is finite
    check_finite(torch.zeros(0), "x")
    for bad in (float("nan"), float("inf"), -float("inf")):
        x = torch.ones(3, 4)
        x[1, 2] = bad
        with pytest.raises(ValueError, match=r"`x`: expected finite values, got 1 NaN/Inf \(first at index \(1, 2\)\)"):
            check_finite(x, "x")
    x = torch.ones(3)
    x[0], x[2] = float("inf"), -float("inf")  # inf + -inf = nan: still caught, both counted
    with pytest.raises(ValueError, match="got 2 NaN/Inf"):
        check_finite(x, "x")


def test_check_shape_refuses_empty_axes_unless_allowed():
    from pixelbook._checks import check_shape
    with pytest.raises(ValueError, match=r"`x`: expected a non-empty tensor of shape \(N, H, W\), got \(0, 4, 4\)"):
        check_shape(torch.zeros(0, 4, 4), "x", "N H W")
    with pytest.raises(ValueError, match="non-empty"):
        check_shape(torch.zeros(0, 4, 4), "x", "K H W", allow_empty="N")
    assert check_shape(torch.zeros(0, 4, 4), "x", "K H W", allow_empty="K") == {"K": (0, "x"), "H": (4, "x"),
                                                                             "W": (4, "x")}


def test_check_tensor_and_one_element_tensors():
    from pixelbook._checks import check_tensor
    with pytest.raises(ValueError, match="`t`: expected a non-empty tensor"):
        check_tensor(torch.zeros(0), "t")
    with pytest.raises(TypeError, match="`t`: expected a floating-point tensor"):
        check_tensor(torch.zeros(3, dtype=torch.int64), "t")
    with pytest.raises(ValueError, match="`t`: expected finite values"):
        check_tensor(torch.tensor([1.0, float("nan")]), "t")
    with pytest.raises(TypeError, match="`t`: expected a torch.Tensor"):
        check_tensor([1.0], "t")
    assert check_float(torch.tensor([2.5]), "x") == 2.5   # a learnable (1,) parameter
    with pytest.raises(TypeError):
        check_float(torch.tensor([1.0, 2.0]), "x")
