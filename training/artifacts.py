"""A trained model's directory as a .tar.gz stream, written as it is read so that memory stays flat."""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

CHUNK_BYTES = 1 << 20


def _gzip(chunks: Iterator[bytes]) -> Iterator[bytes]:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 16+: a gzip header and trailer
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()


def _tar(directory: Path, root_name: str) -> Iterator[bytes]:
    for path in sorted(directory.rglob("*")):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            continue
        stat = path.stat()
        info = tarfile.TarInfo(f"{root_name}/{path.relative_to(directory).as_posix()}")
        info.mtime = int(stat.st_mtime)
        if path.is_dir():
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            yield info.tobuf(format=tarfile.PAX_FORMAT)
            continue
        info.size, info.mode = stat.st_size, 0o644
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk
        yield b"\0" * (-info.size % tarfile.BLOCKSIZE)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)  # end-of-archive marker


def directory_archive_stream(*, directory: str | Path, root_name: str) -> Iterator[bytes]:
    """Yield a .tar.gz of `directory` whose members sit under `root_name/`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory")
    return _gzip(_tar(directory, root_name))
