"""Reading JSON-lines files, one object a line, with errors that name the file and line.

Every JSONL input of the engine (seed tasks, training data, eval prompts, the run
directory's records) is read here; each caller picks the error class its users catch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator


def json_records(path: str | Path, error: type[Exception] = ValueError,
                 torn_tail_ok: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line of ``path``, streaming.

    Raises FileNotFoundError naming the path, or `error` naming ``path:line`` for a line that
    is not JSON or not a JSON object. With torn_tail_ok, a last line that has no newline and
    does not parse (a write cut short by a killed run) ends the file instead.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                # without its newline: a line cut short is then reported at the column where
                # it ends, not at "line 2 column 1" of the text after the newline
                record = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as err:
                if torn_tail_ok and not line.endswith("\n"):
                    return
                where = "column" if err.msg.endswith(" at") else "at column"
                raise error(f"{path}:{number}: malformed JSON ({err.msg} {where} {err.colno})") from None
            if not isinstance(record, dict):
                raise error(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            yield number, record
