"""JSONL records for the run directory.

Every stage of the loop writes records (dicts that carry an "id") either by appending as
it goes (a generation stage that can be resumed) or all at once under a temporary name
that is renamed when complete. A run killed mid-append leaves at most one torn final
line; reading tolerates it and the next append cuts it off, so nothing is counted twice
and nothing is glued to half a record.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.jsonl import json_records


class RecordFormatError(ValueError):
    """A JSONL file holds a line that is not a JSON object (names file and line)."""


def record_id(iteration: int, index: int) -> str:
    """The id of the index-th record of an iteration, e.g. ``it01-000042``.

    Ids sort in creation order and are unique across iterations, so cumulative training
    data can be de-duplicated by id.
    """
    return f"it{iteration:02d}-{index:06d}"


def _dump_line(record: dict) -> str:
    if not isinstance(record, dict):
        raise TypeError(f"a record must be a dict, got {type(record).__name__}")
    return json.dumps(record, ensure_ascii=False) + "\n"


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _repair_tail(path: Path) -> None:
    """Make the file end at a line boundary before appending.

    A final line without its newline is either a torn write (cut it off) or a complete
    record written by some other tool (give it its newline).
    """
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        # Walk back to the last newline; the tail after it is the unterminated line.
        block, pos, tail = 65536, size, b""
        while pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                tail = chunk[cut + 1:] + tail
                pos += cut + 1
                break
            tail = chunk + tail
        if _parses(tail.decode("utf-8", errors="replace")):
            f.seek(0, os.SEEK_END)
            f.write(b"\n")
        else:
            f.truncate(pos)


def append_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Append records as JSON lines, then flush and fsync; returns how many were written.

    A torn final line left by a killed run is cut off first.
    """
    path = Path(path)
    lines = [_dump_line(r) for r in records]
    if path.exists():
        _repair_tail(path)
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(lines))
        f.flush()
        os.fsync(f.fileno())
    return len(lines)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read every record of a JSONL file.

    Blank lines are skipped. A final line that has no newline and does not parse is a
    torn write from a killed run and is ignored; any other malformed line, or a line that
    is not a JSON object, raises RecordFormatError naming file and line.
    """
    return [record for _, record in json_records(path, RecordFormatError, torn_tail_ok=True)]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text to a temporary file in the same folder, fsync, then rename over path.
    The file gets the mode a plain open() would give it (0666 less the umask), not
    mkstemp's 0600, so teammates on a shared filesystem can read the run."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Write all records to a temporary file in the same folder, then rename over path."""
    atomic_write_text(path, "".join(_dump_line(r) for r in records))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write one JSON document (indented) atomically: temporary file, fsync, rename."""
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def index_by_id(records: Iterable[dict], source: str = "records") -> dict[str, dict]:
    """Map id -> record; a missing or repeated id raises ValueError naming the source."""
    index: dict[str, dict] = {}
    for position, record in enumerate(records):
        rid = record.get("id")
        if rid is None:
            raise ValueError(f"{source}: record {position} has no 'id'")
        if rid in index:
            raise ValueError(f"{source}: id {rid!r} appears more than once")
        index[rid] = record
    return index
