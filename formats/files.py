"""Files read and written so that nothing is half-read or half-written: UTF-8 text whose errors name the file
and line, and writes that replace a file whole (the old one or the new one, never half of one)."""
import errno
import os
import shutil
from pathlib import Path


class DataError(ValueError):
    """Malformed input data; the message names the file and line."""


def read_text(path) -> str:
    """A UTF-8 text file with \\n line ends (a BOM is dropped; CRLF read as LF); bad bytes are a clear
    error."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_lines(path):
    return read_text(path).splitlines()


def write_file(path: Path, text):
    os.replace(fill_file(path, text), path)  # the old file or the new one, never half of one


def fill_file(path: Path, text):
    """`text` written beside `path`, as <path>.tmp (removed again if the write fails): returns that file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise disk_full(e, path, len(text.encode())) or e
    return tmp


def disk_full(error, path: Path, needs):
    """ENOSPC (or torch.save's write failure, a RuntimeError from its zip writer) as one line naming the file
    being written; None for any other error."""
    torch_write = isinstance(error, RuntimeError) and "PytorchStreamWriter" in str(error)
    if not (isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT) or torch_write):
        return None
    free = shutil.disk_usage(path.parent if path.parent.exists() else ".").free
    what = "no space left on the device" if isinstance(error, OSError) else "the write failed (disk full?)"
    return OSError(f"{path}: {what}: this save needs about {needs / 2**20:.1f} MiB, {free / 2**20:.1f} MiB "
                   f"free; the previous results are kept: free space and continue with --resume")
