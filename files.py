"""Files read and written so that nothing is half-read or half-written: UTF-8 text whose errors name the file
and line, and writes that replace a file whole (the old one or the new one, never half of one)."""
import os
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
    """`text` written beside `path` and renamed over it: the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
