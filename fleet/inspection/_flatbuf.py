"""Bounds checks that the generated ``tflite`` accessors leave out, and their error map.

The ``flatbuffers`` runtime trusts every offset: a hostile file makes it raise
``struct.error``, ``TypeError`` (an offset outside uint32) or ``ValueError`` (numpy views),
or — worse — hand back a declared vector length of four billion for us to loop over, or a
string silently cut short by slicing. So before the generated code reads a table, vector
or string, :class:`FlatView` checks that it lies inside the file and within its cap, and
:func:`flatbuffer_errors` turns whatever the runtime still raises into ModelRejected.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from fleet.inspection.errors import ModelRejected, RejectCode

__all__ = ["FlatView", "flatbuffer_errors", "slot"]

_T = TypeVar("_T")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_U16x2 = struct.Struct("<HH")
_U16 = struct.Struct("<H")

# What the flatbuffers runtime raises on an offset it cannot follow.
_RUNTIME_ERRORS = (struct.error, TypeError, ValueError, IndexError, OverflowError)


def slot(field_id: int) -> int:
    """vtable slot of the schema field with this id (``schema.fbs`` order, from 0)."""
    return 4 + 2 * field_id


@contextmanager
def flatbuffer_errors(what: str) -> Iterator[None]:
    """Map the flatbuffers runtime's exceptions to ModelRejected(MALFORMED)."""
    try:
        yield
    except ModelRejected:
        raise
    except _RUNTIME_ERRORS as exc:
        raise ModelRejected(
            RejectCode.MALFORMED, f"cannot read {what}: {type(exc).__name__}: {exc}"
        ) from exc


class FlatView:
    """Checks offsets of one flatbuffer against its length before they are followed."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._size = len(data)

    def table(self, obj: _T, what: str) -> _T:
        """``obj`` (a generated tflite class) if its table and vtable lie in the file."""
        pos = self._pos(obj)
        self._need(pos, 4, what)
        vtable = pos - _I32.unpack_from(self._data, pos)[0]
        self._need(vtable, 4, f"{what}'s vtable")
        vtable_len, table_len = _U16x2.unpack_from(self._data, vtable)
        if vtable_len < 4 or vtable_len % 2 or table_len < 4:
            raise ModelRejected(
                RejectCode.MALFORMED,
                f"{what}'s vtable at {vtable} declares sizes {vtable_len}/{table_len}",
            )
        self._need(vtable, vtable_len, f"{what}'s vtable")
        self._need(pos, table_len, what)
        return obj

    def vector_length(self, obj: Any, field: int, *, elem_size: int, cap: int, what: str) -> int:
        """Length of vector ``field`` of a checked table; 0 when absent."""
        start = self._vector_start(obj, field, what)
        if start is None:
            return 0
        length: int = _U32.unpack_from(self._data, start - 4)[0]
        if length > cap:
            raise ModelRejected(
                RejectCode.TOO_LARGE, f"{what} declares {length} entries; the cap is {cap}"
            )
        self._need(start, length * elem_size, what)
        return length

    def string(self, obj: Any, field: int, *, cap: int, what: str) -> str:
        """UTF-8 string ``field`` of a checked table; empty when absent."""
        length = self.vector_length(obj, field, elem_size=1, cap=cap, what=what)
        start = self._vector_start(obj, field, what)
        if start is None:
            return ""
        try:
            return self._data[start : start + length].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelRejected(RejectCode.MALFORMED, f"{what} is not UTF-8: {exc}") from exc

    def _vector_start(self, obj: Any, field: int, what: str) -> int | None:
        self.table(obj, what)
        pos = self._pos(obj)
        vtable = pos - _I32.unpack_from(self._data, pos)[0]
        vtable_len, table_len = _U16x2.unpack_from(self._data, vtable)
        vslot = slot(field)
        if vslot + 2 > vtable_len:
            return None
        offset: int = _U16.unpack_from(self._data, vtable + vslot)[0]
        if offset == 0:
            return None
        if offset + 4 > table_len:
            raise ModelRejected(
                RejectCode.MALFORMED, f"{what}'s offset field lies outside its table"
            )
        at = pos + offset
        target: int = at + _U32.unpack_from(self._data, at)[0]
        self._need(target, 4, what)
        return target + 4

    @staticmethod
    def _pos(obj: Any) -> int:
        # Every generated class keeps its position in ``_tab`` (a flatbuffers Table).
        pos: int = obj._tab.Pos
        return pos

    def _need(self, start: int, length: int, what: str) -> None:
        if start < 0 or start + length > self._size:
            raise ModelRejected(
                RejectCode.MALFORMED,
                f"{what} at offset {start} ({length} bytes) lies outside the "
                f"{self._size}-byte file",
            )
