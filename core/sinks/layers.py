"""Streaming byte layers under a serialiser: serialiser -> gzip -> AES-GCM -> temp file (renamed at the end).

Each layer has ``write(bytes-like)`` and ``close()``; closing a layer writes its trailer into the layer below and
leaves that one open, so an ``Output`` closes them top-down and then commits the temp file. The layers run on the
thread that serialises (the sink's table lanes, one per core, already keep both cores busy). A thread of their
own per file, fed by a queue, used to overlap serialising with hashing and writing: on the 2-core VM it gained
nothing (1,000,000 NDJSON patients 8.4-8.6 s without, 8.9 s with) and cost 25-35 MB of peak memory in queued
buffers and the heap fragmentation they caused (NDJSON 298-307 -> 270-272 MB, CSV 322 -> 296 MB).
"""
from __future__ import annotations

import hashlib
import os
import secrets
import zlib
from contextlib import suppress
from pathlib import Path

from core.runs import current_staging

from .crypto import Seal

# zlib level 1: 3-4x faster than level 6 for ~40% larger files (benchmarks/bench_sinks.py)
GZIP_LEVEL = 1
WRITE_BUFFER = 1 << 20


# Write-behind: every 64 MB, ask the kernel to write back what is done and to drop what is already on disk from
# the page cache (POSIX_FADV_DONTNEED starts write-back of dirty pages and evicts clean ones). A multi-GB text run
# otherwise fills the cache with pages it never reads again, and on a VM each fresh page costs a fault: writing
# 4 GB took 2.8-8.7 s of kernel time plainly, 1.1 s this way (benchmarks/bench_sinks.py).
WRITE_BEHIND = 64 << 20
_CAN_WRITE_BEHIND = hasattr(os, "posix_fadvise") and hasattr(os, "POSIX_FADV_DONTNEED")


class Abandoned(Exception):
    """Raised in a writer thread whose file the sink is discarding (a cancelled or failed run)."""


class TempFile:
    """Bottom layer: a hidden temp file next to ``final``; counts and hashes the bytes as they go to disk."""

    def __init__(self, final: Path):
        self.final = final
        self.path = final.with_name(f".{final.name}.partial-{secrets.token_hex(4)}")
        self._file = open(self.path, "xb", buffering=WRITE_BUFFER)
        self.abandoned = False
        self._sha256 = hashlib.sha256()
        self.bytes = 0
        self._flushed = self._dropped = 0  # write-back asked up to here / evicted up to here

    def write(self, data) -> None:
        if self.abandoned:  # the sink is aborting: the thread writing here stops at its next piece
            raise Abandoned(f"{self.final.name} is being discarded")
        self._sha256.update(data)
        self._file.write(data)
        self.bytes += len(data)
        if _CAN_WRITE_BEHIND and self.bytes - self._flushed >= 2 * WRITE_BEHIND:
            self._write_behind()

    def _write_behind(self) -> None:
        fd, done = self._file.fileno(), self.bytes - WRITE_BEHIND  # the last piece may still sit in our buffer
        try:  # the range of the round before is clean by now and is dropped; the new one starts write-back
            os.posix_fadvise(fd, self._dropped, done - self._dropped, os.POSIX_FADV_DONTNEED)
        except OSError:  # a file system without the hint: plain writes are still correct
            pass
        self._dropped, self._flushed = self._flushed, done

    def commit(self) -> dict:
        """Close and rename to the final name (atomic on one file system; replaces an older file only now).

        Within a run's ``core.runs.Staging`` the rename is left to the run, which makes all its files appear
        together just before its manifest (``held`` is then True in the entry)."""
        self._file.close()
        entry = {"name": self.final.name, "bytes": self.bytes, "sha256": self._sha256.hexdigest()}
        staging = current_staging()
        if staging is not None:
            staging.add(self.path, self.final)
            return {**entry, "held": True}
        os.replace(self.path, self.final)
        return entry

    def abandon(self) -> None:
        """Make every further ``write`` raise Abandoned: a long write in another thread ends at its next piece."""
        self.abandoned = True

    def discard(self) -> None:
        with suppress(OSError):
            self._file.close()
        self.path.unlink(missing_ok=True)


class GzipWriter:
    """A single gzip member (mtime 0, no file name, so equal input gives equal bytes)."""

    def __init__(self, raw, level: int):
        self._raw = raw
        self._zlib = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def write(self, data) -> None:
        if out := self._zlib.compress(data):
            self._raw.write(out)

    def close(self) -> None:
        self._raw.write(self._zlib.flush())


class Output:
    """One output file: ``stream`` takes serialised bytes; ``finish`` writes trailers; ``commit`` renames."""

    def __init__(self, final: Path, *, compress: bool = False, seal: Seal | None = None):
        self.file = TempFile(final)
        try:
            self._layers = []
            self.stream = self.file
            if seal is not None:
                self.stream = seal.writer(self.stream)
                self._layers.insert(0, self.stream)
            if compress:
                self.stream = GzipWriter(self.stream, GZIP_LEVEL)
                self._layers.insert(0, self.stream)
        except BaseException:
            self.file.discard()
            raise

    def finish(self) -> None:
        for layer in self._layers:
            layer.close()

    def commit(self) -> dict:
        return self.file.commit()

    def abandon(self) -> None:
        self.file.abandon()

    def discard(self) -> None:
        self.file.discard()
