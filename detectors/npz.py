"""Reading ``.npz`` containers (profiles, checkpoints) that may come from an untrusted place.

`numpy.load` allocates what an array's header claims before it reads the data, so a few
hundred bytes claiming ``shape (8589934592,)`` of float64 ask for 64 GiB. `read_npz` first
reads every member's header and refuses one that claims more bytes than the member holds;
object arrays stay refused (they would need pickle).
"""

from __future__ import annotations

import io
import math
import zipfile
from typing import IO, Any

import numpy as np
import numpy.typing as npt


def read_npz(data: bytes, source: str) -> dict[str, npt.NDArray[Any]]:
    """Every array of the container ``data``, by name.

    Raises:
        ValueError: a member's header claims more data than the member holds, or numpy
            cannot read the container (the message names ``source`` and the member).
        zipfile.BadZipFile, EOFError, OSError: not a readable zip container.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                _check_claim(member, info, source)
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _check_claim(member: IO[bytes], info: zipfile.ZipInfo, source: str) -> None:
    """Refuse a member whose header claims more bytes than the member holds."""
    name = f"{source}: {info.filename}"
    try:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except ValueError as exc:
        raise ValueError(f"{name}: not a readable .npy header ({exc})") from None
    if any(dim < 0 for dim in shape):
        raise ValueError(f"{name}: header claims a negative dimension, shape {shape}")
    if dtype.hasobject:
        return  # numpy refuses it without pickle, with its own message
    claimed = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    held = info.file_size - member.tell()
    if claimed > held:
        raise ValueError(
            f"{name}: header claims shape {shape} of {dtype} ({_size(claimed)}) but the member "
            f"holds {_size(held)}; refused before allocating"
        )


def _size(n_bytes: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} bytes"


__all__ = ["read_npz"]
