"""Files read and written so that nothing is half-read or half-written: UTF-8 text whose errors name the file
and line, and writes that replace files whole (each the old one or the new one, never half of one)."""
import errno
import os
from pathlib import Path


class DataError(ValueError):
    """Malformed input data; the message names the file and line."""


def read_text(path) -> str:
    """A UTF-8 text file with \\n line ends (a BOM is dropped; CRLF read as LF); bad bytes name their line."""
    if not (path := Path(path)).exists():
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


def write_file(path, data):
    write_files({path: data})


def write_files(files, if_full=""):
    """{path: text (as UTF-8) or bytes}, each written as <path>.tmp and synced, then all renamed into place in
    order: a failure while writing (a full disk: one line naming the file, + if_full) keeps every old file."""
    paths, written = [Path(os.path.realpath(p)) for p in files], []  # through a link: its target
    try:
        for path, data in zip(paths, files.values()):
            path.parent.mkdir(parents=True, exist_ok=True)
            written.append(path.with_name(path.name + ".tmp"))
            with open(written[-1], "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())  # on the disk before the rename: a power cut leaves the old or the new
    except BaseException as e:
        for tmp in written:
            tmp.unlink(missing_ok=True)
        if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(f"{path}: no space left on the device{if_full}") from None
        raise
    for tmp, path in zip(written, paths):
        os.replace(tmp, path)
    for folder in {path.parent for path in paths} if os.name == "posix" else ():  # Windows opens no folder
        os.fsync(fd := os.open(folder, os.O_RDONLY))  # the renames on the disk too
        os.close(fd)
