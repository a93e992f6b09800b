"""Block-wise transfers (RFC 7959) done by tinyfleet's resources rather than by aiocoap.

aiocoap assembles Block1 uploads without a size limit and renders a whole response before
slicing Block2, so the resources that need blocks turn that off
(``needs_blockwise_assembly`` → False) and use these helpers: a Block2 slice of any
representation, computed from the request alone (any block can be fetched on its own,
so a download resumes where it stopped), and a Block1 assembly capped in bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiocoap import error
from aiocoap.message import Message
from aiocoap.numbers.codes import Code

__all__ = ["MAX_SZX", "Block1Assembly", "BlockSlice", "block2_slice"]

MAX_SZX = 6
"""1,024-byte blocks; SZX 7 (BERT) exists only over reliable transports."""


@dataclass(frozen=True)
class BlockSlice:
    number: int
    szx: int
    start: int
    stop: int
    more: bool

    @property
    def option(self) -> tuple[int, bool, int]:
        return (self.number, self.more, self.szx)


def block2_slice(request: Message, length: int) -> BlockSlice:
    """The block of a ``length``-byte representation that ``request`` asks for.

    No Block2 option means block 0 of 1,024 bytes; otherwise the client's block number
    and size (SZX 0-6). A block past the end is refused with 4.02 Bad Option.
    """
    block = request.opt.block2
    number, szx = (0, MAX_SZX) if block is None else (block.block_number, block.size_exponent)
    if szx > MAX_SZX:
        raise error.BadOption("Block2 SZX 7 (BERT) is not available over UDP")
    size = 1 << (szx + 4)
    start = number * size
    if start >= length and not (start == 0 and length == 0):
        raise error.BadOption(f"block {number} of {size} bytes is past the end ({length} bytes)")
    stop = min(start + size, length)
    return BlockSlice(number, szx, start, stop, stop < length)


@dataclass
class _Upload:
    body: bytearray
    size: int
    touched: float


@dataclass
class Block1Assembly:
    """Block1 uploads in progress, keyed by (peer, path); each one capped at ``max_bytes``."""

    max_bytes: int
    lifetime: float = 60.0
    max_uploads: int = 1024
    _uploads: dict[tuple[str, tuple[str, ...]], _Upload] = field(default_factory=dict)

    def feed(self, request: Message) -> bytes | Message:
        """The whole body once complete, else the 2.31 Continue to answer; raises 4.xx."""
        block = request.opt.block1
        size1 = request.opt.size1
        if size1 is not None and size1 > self.max_bytes:
            raise _too_large(self.max_bytes)
        if block is None:
            if len(request.payload) > self.max_bytes:
                raise _too_large(self.max_bytes)
            return bytes(request.payload)
        if block.size_exponent > MAX_SZX:
            raise error.BadOption("Block1 SZX 7 (BERT) is not available over UDP")
        key = (str(request.remote.hostinfo), tuple(request.opt.uri_path))
        upload = self._upload(key, block.block_number, block.size)
        if block.block_number * block.size != len(upload.body):
            self._uploads.pop(key, None)
            raise error.RequestEntityIncomplete(f"block {block.block_number} is out of order")
        if block.more and len(request.payload) != block.size:
            self._uploads.pop(key, None)
            raise error.BadRequest("a block that is not the last must be full")
        if len(upload.body) + len(request.payload) > self.max_bytes:
            self._uploads.pop(key, None)
            raise _too_large(self.max_bytes)
        upload.body += request.payload
        upload.touched = time.monotonic()
        if block.more:
            return Message(
                code=Code.CONTINUE, block1=(block.block_number, True, block.size_exponent)
            )
        del self._uploads[key]
        return bytes(upload.body)

    def _upload(self, key: tuple[str, tuple[str, ...]], number: int, size: int) -> _Upload:
        self._expire()
        if number == 0:
            if len(self._uploads) >= self.max_uploads and key not in self._uploads:
                raise error.ServiceUnavailable("too many uploads in progress")
            upload = self._uploads[key] = _Upload(bytearray(), size, time.monotonic())
            return upload
        upload_or_none = self._uploads.get(key)
        if upload_or_none is None or upload_or_none.size != size:
            self._uploads.pop(key, None)
            raise error.RequestEntityIncomplete(f"block {number} without the blocks before it")
        return upload_or_none

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.lifetime
        for key in [k for k, u in self._uploads.items() if u.touched < cutoff]:
            del self._uploads[key]


def _too_large(limit: int) -> error.RenderableError:
    return _TooLarge(f"bodies are limited to {limit} bytes", size1=limit)


class _TooLarge(error.RequestEntityTooLarge):  # type: ignore[misc]
    """4.13 with Size1 = the limit, as RFC 7959 §2.9.3 asks."""

    def __init__(self, message: str, *, size1: int) -> None:
        super().__init__(message)
        self.size1 = size1

    def to_message(self) -> Message:
        response = super().to_message()
        response.opt.size1 = self.size1
        return response
