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
