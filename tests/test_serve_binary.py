"""The `.npy` reader of binary signals (faultwatch.serve.binary): what it reads, and each rule
it refuses by, with the JSON body's statuses, rules and key paths."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

from faultwatch.serve.binary import npy_body, read_npy, signals_of
from faultwatch.serve.channels import ChannelError
from faultwatch.serve.schema import ServingLimits

LIMITS = ServingLimits(min_length=16, max_length=1000, max_batch=4)
XYZ = ("x", "y", "z")


def refusal(fn, *args) -> tuple[int, str, list, str]:
    with pytest.raises(ChannelError) as e:
        fn(*args)
    return e.value.status, e.value.reason, e.value.loc, e.value.msg


@pytest.mark.parametrize("dtype", ["<f4", "<f8", ">f4", ">f8"])
def test_floats_of_either_size_and_byte_order_read_back_exactly(dtype):
    x = np.random.default_rng(0).normal(size=(3, 100)).astype(dtype)
    got = read_npy(npy_body(x))
    assert got.dtype == np.float64 and got.shape == (3, 100)
    assert np.array_equal(got, x.astype("float64"))


def test_a_fortran_ordered_array_reads_in_its_own_order():
    x = np.asfortranarray(np.arange(300, dtype="float64").reshape(3, 100))
    buf = io.BytesIO()
    np.save(buf, x)  # np.save keeps Fortran order in the header
    assert b"'fortran_order': True" in buf.getvalue()[:128]
    assert np.array_equal(read_npy(buf.getvalue()), x)


def test_what_is_not_a_plain_npy_is_refused_naming_why(tmp_path):
    good = npy_body(np.zeros(100))
    assert refusal(read_npy, b'{"signal": [1, 2]}')[:2] == (400, "npy_format")
    assert refusal(read_npy, good[:20])[:2] == (400, "npy_format")  # the header cut short
    status, reason, loc, msg = refusal(read_npy, good[:-8])
    assert (status, reason, loc) == (400, "npy_size", ["body"])
    assert "is 800 bytes, the body has 792" in msg
    assert refusal(read_npy, good + b"\0" * 8)[1] == "npy_size"
    # ints, complex numbers: named, with what is read
    status, reason, _, msg = refusal(read_npy, npy_body(np.zeros(100, dtype="<i2")))
    assert (status, reason) == (400, "dtype") and "dtype <i2: expected float32 or float64" in msg
    assert refusal(read_npy, npy_body(np.zeros(100, dtype="complex128")))[1] == "dtype"


def test_an_object_array_is_never_unpickled(tmp_path):
    """A pickle in a .npy body runs code when loaded with allow_pickle: it is refused from its
    header, before its bytes are looked at."""
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    x = np.empty(2, dtype=object)
    x[0], x[1] = Payload(), 1.0
    buf = io.BytesIO()
    np.save(buf, x, allow_pickle=True)
    assert pickle.PROTO in buf.getvalue()  # the body does carry a pickle
    status, reason, _, msg = refusal(read_npy, buf.getvalue())
    assert (status, reason) == (400, "dtype") and "never read" in msg
    assert not marker.exists()


def test_univariate_shapes_for_each_endpoint():
    one = np.linspace(0, 1, 100)
    [got] = signals_of(one, False, None, LIMITS)
    assert np.array_equal(got, one)
    assert len(signals_of(np.stack([one, one]), True, None, LIMITS)) == 2
    status, reason, _, msg = refusal(signals_of, np.stack([one, one]), False, None, LIMITS)
    assert (status, reason) == (422, "shape") and "expected one signal (samples,)" in msg
    assert refusal(signals_of, one, True, None, LIMITS)[:2] == (422, "shape")
    status, reason, loc, msg = refusal(signals_of, np.zeros((5, 100)), True, None, LIMITS)
    assert (status, reason, loc) == (422, "too_long", ["signals"]) and "from 1 to 4" in msg


def test_multichannel_shapes_name_the_channels():
    three = np.zeros((3, 100))
    [got] = signals_of(three, False, XYZ, LIMITS)
    assert got.shape == (3, 100)
    status, reason, loc, msg = refusal(signals_of, np.zeros((2, 100)), False, XYZ, LIMITS)
    assert (status, reason, loc) == (422, "channel_count", ["signal"])
    assert "2 channels: expected 3, ['x', 'y', 'z']" in msg
    batch = np.zeros((2, 2, 100))
    assert refusal(signals_of, batch, True, XYZ, LIMITS)[2] == ["signals", 0]


def test_each_sample_meets_the_json_bodys_rules_with_its_index():
    x = np.zeros((2, 3, 100))
    x[1, 2, 17] = np.nan
    status, reason, loc, msg = refusal(signals_of, x, True, XYZ, LIMITS)
    assert (status, reason, loc) == (400, "finite_number", ["signals", 1, 2, 17])
    assert msg.startswith("channel z:")
    y = np.zeros(100)
    y[5] = 1e20
    assert refusal(signals_of, y, False, None, LIMITS)[1:3] == ("less_than_equal", ["signal", 5])
    assert refusal(signals_of, np.zeros(8), False, None, LIMITS)[1:3] == ("too_short", ["signal"])
    assert refusal(signals_of, np.zeros(1001), False, None, LIMITS)[1] == "too_long"
