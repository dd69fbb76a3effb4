"""Binary signals: a /predict or /predict_batch body in NumPy's `.npy` format
(`Content-Type: application/x-npy`), read without pickles and checked by the JSON body's rules.

Why `.npy`: a signal is one array of one dtype and shape, which is all `.npy` holds (a magic
string, a short header naming dtype, order and shape, then the raw samples); every NumPy writes
it (`np.save` to a buffer), it needs nothing the service does not have, and reading it is a
header parse and a memory view. Arrow IPC carries tables and schemas a signal does not need,
and pyarrow in the serving image for that alone would cost more than it gives.

The array's shape is the JSON body's: `/predict` takes (samples,) for a univariate model and
(channels, samples) in the model's channel order for a multichannel one; `/predict_batch` one
more axis first, the signals. Accepted dtypes: float32 and float64, either byte order (float64
inside). Refused with a 4xx naming the rule and, where there is one, the index: anything that
is not a plain `.npy` (a bad magic string or header, version 3, a size that is not the header's,
object or structured dtypes: nothing is ever unpickled), another dtype, another number of axes
or channels, too many signals, and then each signal by the rules the JSON body's samples meet
(length limits, finite, |value| at most MAX_ABS_VALUE), the index of the first bad sample in
`loc` as for JSON (["signal", 5], ["signals", 2, 0, 17]).
"""

from __future__ import annotations

import io
import math
from typing import Any, ClassVar

import numpy as np

from faultwatch.serve.channels import ChannelError, check_samples
from faultwatch.serve.guard import NPY_TYPE
from faultwatch.serve.schema import ServingLimits

FLOAT_KINDS = {4: "float32", 8: "float64"}


def _bad(reason: str, msg: str, status: int = 400, loc: list[str | int] | None = None):
    return ChannelError(status, reason, loc or ["body"], msg)


def read_npy(body: bytes) -> np.ndarray:
    """The array a `.npy` body holds, as float64; ChannelError (400) for anything else."""
    fp = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(fp)
    except ValueError:
        raise _bad("npy_format", "not a .npy body (it starts with b'\\x93NUMPY')") from None
    try:
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"version {version[0]}.{version[1]} (1.0 and 2.0 are read)")
    except ValueError as e:
        raise _bad("npy_format", f"a .npy header that cannot be read: {e}") from None
    if dtype.hasobject or dtype.fields is not None:
        raise _bad("dtype", f"dtype {dtype}: objects and records are never read, floats only")
    if dtype.kind != "f" or dtype.itemsize not in FLOAT_KINDS:
        raise _bad("dtype", f"dtype {dtype.str}: expected float32 or float64 ('<f4', '<f8')")
    data = memoryview(body)[fp.tell() :]
    expected = math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        msg = f"the header's shape {tuple(shape)} of {dtype.str} is {expected} bytes, the body has {len(data)}"
        raise _bad("npy_size", msg)
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return array.astype("float64")


def signals_of(
    array: np.ndarray, batch: bool, channels: tuple[str, ...] | None, limits: ServingLimits
) -> list[np.ndarray]:
    """The signals of a /predict (`batch` False: one) or /predict_batch body's array, each
    (samples,) for a univariate model (`channels` None) or (channels, samples); ChannelError
    with the JSON body's rules and key paths for a bad one."""
    one = 1 if channels is None else 2
    want = one + (1 if batch else 0)
    form = (
        "(samples,)" if channels is None else f"(channels, samples) with channels {list(channels)}"
    )
    if array.ndim != want:
        what = f"one signal {form}" if not batch else f"(signals, ...) of signals {form}"
        raise _bad(
            "shape", f"an array of {array.ndim} axes, shape {array.shape}: expected {what}", 422
        )
    items = list(array) if batch else [array]
    if batch and not 1 <= len(items) <= limits.max_batch:
        msg = f"{len(items)} signals: from 1 to {limits.max_batch} a request"
        raise _bad("too_long" if items else "too_short", msg, 422, ["signals"])
    out = []
    for i, signal in enumerate(items):
        base: list[str | int] = ["signals", i] if batch else ["signal"]
        if channels is None:
            check_samples("signal", base, signal, limits)
        else:
            if len(signal) != len(channels):
                msg = f"{len(signal)} channels: expected {len(channels)}, {list(channels)} in this order"
                raise ChannelError(422, "channel_count", base, msg)
            for c, name in enumerate(channels):
                check_samples(f"channel {name}", [*base, c], signal[c], limits)
        out.append(signal)
    return out


def npy_body(array: np.ndarray) -> bytes:
    """`array` as a `.npy` body (what a client sends: `np.save` to a buffer)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


class BinarySignals:
    """ASGI middleware inside the guard (which has checked the method, the credentials and the
    size, and read the body): a prediction request whose body is `.npy` is answered by the
    worker's service (`answer_binary`, bound when the service starts), as its JSON form would
    be; every other request goes on to BentoML."""

    service: ClassVar[Any] = None  # this worker's FaultDetector, once it has started

    def __init__(self, app: Any, paths: tuple[str, ...] = ()) -> None:
        self.app, self.paths = app, frozenset(paths)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths or not _is_npy(scope):
            return await self.app(scope, receive, send)
        body = bytearray()
        while True:  # the guard replays the body it read in one message
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        if BinarySignals.service is None:
            from faultwatch.serve.answers import error_response

            response = error_response(503, "starting", [], "the service is starting")
        else:
            batch = scope["path"].endswith("_batch")
            response = await BinarySignals.service.answer_binary(bytes(body), batch)
        await response(scope, receive, send)


def _is_npy(scope: Any) -> bool:
    for key, value in scope["headers"]:
        if key.lower() == b"content-type":
            return value.split(b";")[0].strip().lower() == NPY_TYPE.encode()
    return False
