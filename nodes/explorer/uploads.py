"""What the Verify page accepts: a run directory's files, or a zip of them, within limits.

Everything is written under one `tempfile.TemporaryDirectory` and nowhere else: a name is
kept only as a relative path of plain parts (no absolute path, no `..`, no drive, no
backslash tricks), resolved and checked to stay inside that directory. A zip is read
member by member with the uncompressed total, the member count and each member's
compression ratio capped (a zip bomb is refused before it is inflated), and the bytes
actually inflated are counted too, never trusting the header's sizes.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath

MAX_UPLOAD_BYTES = 32 * 1024 * 1024  # the request body
MAX_FILES = 5000  # files in one upload (form parts or zip members)
MAX_UNPACKED_BYTES = 128 * 1024 * 1024  # a zip's contents, inflated
MAX_RATIO = 200  # a member inflating more than this many times its compressed size is a bomb
CHUNK = 64 * 1024


class UploadError(ValueError):
    """An upload refused, with the one-line reason shown on the page."""


def safe_relative(name: str) -> PurePosixPath:
    """`name` as a relative path of plain parts; UploadError if it could leave the directory."""
    text = name.replace("\\", "/")
    if not text or "\x00" in text:
        raise UploadError(f"file name {name!r} is not allowed")
    path = PurePosixPath(text)
    if path.is_absolute() or (path.parts and ":" in path.parts[0]):
        raise UploadError(f"file name {name!r} is absolute")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise UploadError(f"file name {name!r} leaves the upload")
    return PurePosixPath(*parts)


def place(root: Path, name: str) -> Path:
    """Where `name` goes under `root` (created parents); UploadError if that is outside `root`."""
    rel = safe_relative(name)
    dest = (root / rel).resolve()
    base = root.resolve()
    if base not in dest.parents:
        raise UploadError(f"file name {name!r} leaves the upload")
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest


def save_file(root: Path, name: str, data: bytes) -> Path:
    dest = place(root, name)
    if dest.exists():
        raise UploadError(f"{name} was given twice")
    dest.write_bytes(data)
    return dest


def unpack_zip(root: Path, data: bytes) -> int:
    """Unpack a zip's files under `root` within the limits; the number of files written."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UploadError("the uploaded file is not a zip archive") from None
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > MAX_FILES:
            raise UploadError(f"the zip holds {len(members)} files; at most {MAX_FILES} are accepted")
        declared = sum(m.file_size for m in members)
        if declared > MAX_UNPACKED_BYTES:
            raise UploadError(f"the zip would unpack to {declared} bytes, more than the limit of "
                              f"{MAX_UNPACKED_BYTES}: refused (a zip bomb?)")
        total = 0
        for m in members:
            if m.file_size > MAX_RATIO * max(m.compress_size, 1) and m.file_size > 1024 * 1024:
                raise UploadError(f"zip member {m.filename} inflates {m.file_size // max(m.compress_size, 1)} "
                                  f"times: refused as a zip bomb")
            dest = place(root, m.filename)
            written = 0
            try:
                with zf.open(m) as src, dest.open("wb") as out:
                    while chunk := src.read(CHUNK):
                        written += len(chunk)
                        total += len(chunk)
                        if written > m.file_size or total > MAX_UNPACKED_BYTES:
                            raise UploadError(f"zip member {m.filename} inflates past its declared size or "
                                              f"the limit of {MAX_UNPACKED_BYTES} bytes: refused (a zip bomb?)")
                        out.write(chunk)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as exc:
                raise UploadError(f"zip member {m.filename} cannot be read ({type(exc).__name__})") from None
        return len(members)


def run_root(root: Path) -> Path:
    """The directory of the upload that holds the party directories (or is one): the uploaded
    tree may have a top folder (the browser names files `run/guest/job.json`)."""
    found = sorted(p.parent for p in root.rglob("job.json") if len(p.relative_to(root).parts) <= 4)
    if not found:
        raise UploadError("not a run directory: no job.json among the uploaded files "
                          "(upload a party's directory, a `vflchain run --out` directory, or a zip of one)")
    parents = {p.parent for p in found}
    if len(found) > 1 and len(parents) == 1:
        return parents.pop()
    if len(found) == 1:
        return found[0]
    raise UploadError("the upload holds more than one run (job.json files in different folders): "
                      "upload one run at a time")
