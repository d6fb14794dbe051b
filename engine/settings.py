"""One settings system for the I-SHEEP loop, the trainer and the engine.

Settings are dataclasses whose fields carry their help text and bounds (`setting(...)`); a
field whose type is itself such a dataclass is a section (`[section]` in TOML, `section.key`
on the command line). Values come from defaults, then TOML files, then `key=value`
overrides, and every one is checked when it is read: its type, its choices, its range. A
mistake fails at once, before any model loads, with one SettingsError that names the key,
where the value came from, and the nearest valid key.

    cfg = MySettings()
    sources = apply_mapping(cfg, read_toml("run.toml"), "run.toml")
    apply_overrides(cfg, ["training.lr=1e-4"], sources)
    check(cfg, sources)
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the key and where it came from."""


_MISSING = dataclasses.MISSING


def setting(default: Any = _MISSING, help: str = "", *, choices: tuple | None = None,
            ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None, mutable: bool = False, path: bool = False) -> Any:
    """A dataclass field with its help text and checks.

    choices: allowed values; ge/gt/le/lt: bounds on a number (None skips the check, and a None
    value is never bounds-checked); mutable: a resumed run may change it (it changes no
    decision already taken); path: a file or directory, resolved against the directory of the
    TOML file that sets it (command-line values against the current directory).
    """
    meta = dict(help=help, choices=choices, ge=ge, gt=gt, le=le, lt=lt, mutable=mutable, path=path)
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def tomllib():
    """The TOML reader: the standard library's from Python 3.11, the tomli package before."""
    try:
        import tomllib as lib
    except ImportError:            # Python 3.10
        try:
            import tomli as lib
        except ImportError:
            raise SettingsError("reading TOML needs Python >= 3.11 or the tomli package") from None
    return lib


def read_toml(path: str | Path, error: type[Exception] = SettingsError) -> dict:
    """A TOML file as a dict; a missing file or a syntax error raises `error` naming it."""
    p = Path(path)
    if not p.is_file():
        raise error(f"config file {p} does not exist")
    lib = tomllib()
    try:
        return lib.loads(p.read_text())
    except lib.TOMLDecodeError as e:
        raise error(f"{p}: invalid TOML ({e})") from None


# --- the shape of a settings tree ---------------------------------------------------------
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def is_section(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def dotted_keys(cls, prefix: str = "") -> list[str]:
    """Every leaf key of a settings class, dotted (`section.key`)."""
    keys, hints = [], _hints(cls)
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        if is_section(hints[f.name]):
            keys += dotted_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def _nearest(key: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    if not close:   # compare the last part alone: "assessment.treshold" -> "threshold"
        tails = {c.rsplit(".", 1)[-1]: c for c in candidates if "." in c}
        tail = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(tails), n=1, cutoff=0.6)
        close = [tails[tail[0]]] if tail else []
    return f"; did you mean '{close[0]}'?" if close else ""


def _field(obj, name: str, dotted: str, source: str, root) -> tuple[dataclasses.Field, Any]:
    fields = {f.name: f for f in dataclasses.fields(obj) if not f.name.startswith("_")}
    if name not in fields:
        raise SettingsError(f"{source}: unknown setting '{dotted}'"
                            f"{_nearest(dotted, dotted_keys(type(root)))}")
    return fields[name], _hints(type(obj))[name]


# --- reading values -----------------------------------------------------------------------
def apply_mapping(obj, mapping: dict, source: str, sources: dict | None = None,
                  prefix: str = "", root=None, base_dir: Path | None = None) -> dict:
    """Set obj's fields from a (TOML) mapping, recursing into sections; returns the sources
    dict {dotted key: where its value came from}."""
    sources = {} if sources is None else sources
    root = obj if root is None else root
    if base_dir is None and source.endswith(".toml"):
        base_dir = Path(source).resolve().parent
    for name, value in mapping.items():
        dotted = prefix + name
        f, tp = _field(obj, name, dotted, source, root)
        if is_section(tp):
            if not isinstance(value, dict):
                raise SettingsError(f"{source}: {dotted} is a section; write [{dotted}] and its keys")
            apply_mapping(getattr(obj, name), value, source, sources, dotted + ".", root, base_dir)
            continue
        value = convert(value, tp, dotted, source)
        if f.metadata.get("path") and isinstance(value, str) and value and base_dir is not None:
            value = str(_resolve(value, base_dir))
        setattr(obj, name, value)
        sources[dotted] = source
    return sources


def _resolve(value: str, base_dir: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base_dir / p).resolve()


def parse_override(item: str, source: str = "command line") -> tuple[str, Any]:
    """`section.key=value` -> (dotted key, value); the value is read as a TOML literal
    (numbers, booleans, lists, inline tables, quoted strings) or else taken as text."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise SettingsError(f"{source}: {item!r} is not of the form key=value")
    lib = tomllib()
    try:
        value = lib.loads(f"v = {text}")["v"]
    except lib.TOMLDecodeError:
        value = text
    return key.strip(), value


def apply_overrides(obj, overrides, sources: dict | None = None,
                    source: str = "command line") -> dict:
    """Apply `section.key=value` strings; relative paths resolve against the current directory."""
    sources = {} if sources is None else sources
    for item in overrides:
        dotted, value = parse_override(item, source)
        *sections, name = dotted.split(".")
        target = obj
        for k, sec in enumerate(sections):
            f, tp = _field(target, sec, ".".join(sections[:k + 1]), source, obj)
            if not is_section(tp):
                raise SettingsError(f"{source}: {'.'.join(sections[:k + 1])} is a setting, not a "
                                    f"section ({item!r}){_nearest(dotted, dotted_keys(type(obj)))}")
            target = getattr(target, sec)
        apply_mapping(target, {name: value}, source, sources, ".".join(sections) + "." if sections
                      else "", obj, Path.cwd())
    return sources


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def convert(value, tp, key: str, source: str):
    """value (TOML value or text) as the field type tp, or a SettingsError naming the key."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):           # X | None
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        tp = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(tp), typing.get_args(tp)

    def bad(expected: str):
        return SettingsError(f"{source}: '{key}' = {value!r} is not {expected}")

    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
        raise bad("true or false")
    if tp is int:
        if isinstance(value, bool):
            raise bad("an integer")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).replace("_", "")) if not isinstance(value, int) else value
        except ValueError:
            raise bad("an integer") from None
    if tp is float:
        if isinstance(value, bool):
            raise bad("a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad("a number") from None
    if tp is str:
        if isinstance(value, (dict, list, bool)):
            raise bad("text")
        return str(value)
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise bad("a list")
        return [convert(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad("a table")
        return {str(k): convert(v, args[1], f"{key}.{k}", source) for k, v in value.items()}
    raise SettingsError(f"{key}: unsupported setting type {_type_name(tp)}")


# --- checking -----------------------------------------------------------------------------
def leaves(obj, prefix: str = ""):
    """(dotted key, value, field) for every leaf setting of obj."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        if f.name.startswith("_"):
            continue
        value = getattr(obj, f.name)
        if is_section(hints[f.name]):
            yield from leaves(value, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, value, f


def check(obj, sources: dict | None = None) -> None:
    """Every leaf's choices and bounds; the first failure raises naming key and source."""
    sources = sources or {}
    for key, value, f in leaves(obj):
        m, where = f.metadata, sources.get(key, "default")
        if m.get("choices") is not None:
            values = value if isinstance(value, list) else [value]
            for v in values:
                if v not in m["choices"]:
                    raise SettingsError(f"{where}: '{key}' = {v!r}: expected one of "
                                        f"{', '.join(map(str, m['choices']))}")
        if value is None or isinstance(value, (bool, str, list, dict)):
            continue
        for name, ok, word in (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
                               ("le", lambda v, b: v <= b, "<="), ("lt", lambda v, b: v < b, "<")):
            bound = m.get(name)
            if bound is not None and not ok(value, bound):
                raise SettingsError(f"{where}: '{key}' = {value!r} must be {word} {bound}")


# --- writing and describing ---------------------------------------------------------------
def to_dict(obj) -> dict:
    """The settings tree as nested dicts, None values left out (TOML has no null)."""
    out = {}
    for f in dataclasses.fields(obj):
        if f.name.startswith("_"):
            continue
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value)
        elif value is not None:
            out[f.name] = value
    return out


def to_toml(obj) -> str:
    """The resolved settings as TOML text (tomli-w)."""
    import tomli_w

    return tomli_w.dumps(to_dict(obj))


def flatten(obj) -> dict[str, Any]:
    return {key: value for key, value, _ in leaves(obj)}


def describe(cls, prefix: str = "") -> list[str]:
    """One line per setting: `key = default  help [choices]`, section by section."""
    lines, hints = [], _hints(cls)
    default_obj = cls()
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        if is_section(hints[f.name]):
            doc = (hints[f.name].__doc__ or "").strip().split("\n")[0]
            lines += ["", f"[{prefix}{f.name}]" + (f"  {doc}" if doc else "")]
            lines += describe(hints[f.name], f"{prefix}{f.name}.")
            continue
        m = f.metadata
        default = getattr(default_obj, f.name)
        text = f"  {prefix}{f.name} = {default!r}"
        text = text.ljust(44) + " " + m.get("help", "")
        if m.get("choices"):
            text += f" [{' | '.join(map(str, m['choices']))}]"
        lines.append(text.rstrip())
    return lines
