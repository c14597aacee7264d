"""YAML files → plain Python values, plus the line of every key and list item.

PyYAML's `compose` gives a node graph with positions; we turn it into dicts, lists and scalars
ourselves instead of using its constructor, because the constructor drops positions, silently
keeps the last of duplicate keys and would accept tags we never want. Everything that goes wrong
becomes a `Problem` with a line, never a traceback.
"""

from __future__ import annotations

import codecs
import hashlib
import marshal
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import Problem

PathPart = str | int
KeyPath = tuple[PathPart, ...]

_T = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ, _MERGE = _T + "str", _T + "map", _T + "seq", _T + "merge"
# Scalars that keep their source text: a timestamp or `=` is just text to us.
_TEXT_TAGS = {_STR, _T + "timestamp", _T + "value", _MERGE}
_CONSTRUCTED_TAGS = {_T + "int", _T + "bool", _T + "null", _T + "float"}

MAX_BYTES = 16 * 1024 * 1024
# Far deeper than any configuration needs, well inside Python's recursion limit.
MAX_DEPTH = 50

# Only such ids are shown in brackets in a key path; anything else could garble the message.
_LABEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


class _Invalid:
    """A value the loader has already reported (bad tag, recursive alias): validators skip it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<invalid>"

    def __reduce__(self) -> str:
        return "INVALID"  # unpickled (from a parsing process) as the one INVALID


INVALID: Any = _Invalid()


@dataclass(slots=True)
class Lines:
    """Line of one value (for a mapping entry: of its key), and of the values inside it.

    A child that has no children of its own (a scalar) is stored as its bare line number: a
    Lines object and an empty dict per scalar were most of the memory of a large platform."""

    line: int
    children: dict[PathPart, Lines | int] = field(default_factory=dict)


@dataclass
class Document:
    file: str
    data: Any  # None for an empty, unreadable or unparsable file
    # The line map; None when not kept, and rebuilt from `_text` on first use. Only problems
    # need lines, and kept for every file of a large platform the maps took ~1 KB a user, far
    # more than the text they come from.
    _lines: Lines | None
    problems: list[Problem]
    _text: str | None = field(default=None, repr=False)

    @property
    def lines(self) -> Lines:
        if self._lines is None:
            assert self._text is not None, "a document without lines keeps its text"
            root = yaml.compose(self._text, Loader=_LOADER)  # parsed before: cannot fail now
            assert root is not None  # an empty document keeps its (one-line) map
            self._lines = _Builder().build(root, (), 0)[1]
        return self._lines

    def line_of(self, path: KeyPath) -> int:
        """Line of `path`, or of its nearest existing parent (e.g. for a missing key)."""
        lines = self.lines
        for part in path:
            child = lines.children.get(part)
            if child is None:
                break
            if isinstance(child, int):  # a scalar: nothing below it
                return child
            lines = child
        return lines.line

    def key_of(self, path: KeyPath) -> str:
        return format_key(self.data, path)


def show(value: Any, limit: int = 40) -> str:
    """A value for a message: quoted, control characters escaped, shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_key(data: Any, path: KeyPath) -> str:
    """`("tenants", 0, "users", 1, "pin")` → `tenants[acme].users[anna.virtanen].pin`."""
    out: list[str] = []
    node = data
    for part in path:
        if isinstance(part, int):
            label = str(part)
            item = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            ident = item.get("id") if isinstance(item, dict) else None
            if isinstance(ident, str) and _LABEL_ID.fullmatch(ident):
                label = ident
            out.append(f"[{label}]")
            node = item
        else:
            text = part if _PLAIN_KEY.fullmatch(part) else show(part)
            out.append(f".{text}" if out else text)
            node = node.get(part) if isinstance(node, dict) else None
    return "".join(out)


def load_yaml(path: str | Path) -> Document:
    """Read and parse one file; the file name in problems is `path` as given."""
    raw = _read(path)
    return raw if isinstance(raw, Document) else parse_yaml(raw, str(path))


def _read(path: str | Path) -> bytes | Document:
    """The bytes of a file, or a Document with the problem of reading it."""
    name = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        return _failed(name, None, f"cannot read the file: {exc.strerror or exc}")
    except ValueError as exc:  # e.g. a NUL character in the name
        return _failed(name, None, f"cannot read the file: {exc}")
    if len(raw) > MAX_BYTES:
        return _failed(name, None, f"file is larger than {MAX_BYTES} bytes")
    return raw


# From this much YAML on, `load_all` parses in worker processes.
PARALLEL_BYTES = 4 * 1024 * 1024


class ParseCache:
    """Files parsed before, found by the SHA-256 of their bytes (and of this parser's code).

    A large platform's deploy reads 100 files to change one, and a parsed file is read back
    from here several times faster than it parses (bench/README.md). Only files that parsed
    without a problem are kept, as marshal data of plain values, in a folder of the operator's
    own (0700). A broken entry is parsed again; a folder that cannot be written is not used.
    Entries unused for PRUNE_DAYS are removed."""

    PRUNE_DAYS = 7

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._usable = True

    def key(self, raw: bytes) -> str:
        return hashlib.sha256(_parser_digest() + raw).hexdigest()

    def get(self, key: str) -> Any:
        """The parsed data of `key`, or _MISSING."""
        path = self.folder / f"{key}.marshal"
        try:
            data = marshal.loads(path.read_bytes())
            os.utime(path)  # used: not pruned
        except (OSError, EOFError, ValueError, TypeError):
            return _MISSING
        return data

    def put(self, key: str, data: Any) -> None:
        if not self._usable:
            return
        try:
            blob = marshal.dumps(data)
        except ValueError:  # not plain values: never cached
            return
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = self.folder / f".{key}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(blob)
            os.replace(tmp, self.folder / f"{key}.marshal")
        except OSError:
            self._usable = False  # read-only home, full disk: parse every time

    def prune(self) -> None:
        cutoff = time.time() - self.PRUNE_DAYS * 86400
        try:
            for entry in self.folder.iterdir():
                if entry.suffix == ".marshal" and entry.stat().st_mtime < cutoff:
                    entry.unlink(missing_ok=True)
        except OSError:
            pass


_MISSING: Any = object()


def load_all(paths: Sequence[str | Path], cache: ParseCache | None = None) -> list[Document]:
    """`load_yaml` of every path, in order. Parsing is most of the time of validating a large
    platform, files parse independently, and a parsed file comes back from another process
    (pickled) ~30x faster than it parses: so big inputs are parsed by one process per core.
    With `cache`, a file parsed before is not parsed again."""
    docs: list[Document | None] = []
    todo: list[tuple[int, bytes, str]] = []  # (index, bytes, cache key) of the files to parse
    for path in paths:
        raw = _read(path)
        if isinstance(raw, Document):
            docs.append(raw)
            continue
        key = cache.key(raw) if cache is not None else ""
        data = cache.get(key) if cache is not None else _MISSING
        if data is _MISSING:
            todo.append((len(docs), raw, key))
            docs.append(None)
        else:
            docs.append(Document(str(path), data, None, [], _decoded(raw)))
    names = [str(paths[index]) for index, _, _ in todo]
    raws = [raw for _, raw, _ in todo]
    parsed = None
    if _parallel(raws, sum(len(raw) for raw in raws)):
        parsed = _in_workers(parse_yaml, raws, names)
    if parsed is None:
        parsed = [parse_yaml(raw, name) for raw, name in zip(raws, names)]
    for (index, _, key), doc in zip(todo, parsed):
        docs[index] = doc
        if cache is not None and doc.data is not None and not doc.problems and doc._text is not None:
            cache.put(key, doc.data)
    if cache is not None and todo:
        cache.prune()
    return [doc for doc in docs if doc is not None]


def _parallel(items: Sequence[Any], size: int) -> bool:
    # A daemonic process (e.g. a multiprocessing pool's worker) may not start processes.
    return (min(len(items), _cores()) > 1 and not multiprocessing.current_process().daemon
            and size >= PARALLEL_BYTES)


def _in_workers(parse: Any, *columns: Sequence[Any]) -> list[Document] | None:
    try:
        # fork: starts in milliseconds and, unlike spawn, needs no __main__ guard in callers.
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(min(len(columns[0]), _cores()), mp_context=context) as pool:
            return list(pool.map(parse, *columns))
    except (OSError, ValueError, BrokenProcessPool):
        return None  # no worker processes here (no fork, a sandbox): parse in this one


def _decoded(raw: bytes) -> str:
    """The text of a file that parsed before (so it is UTF-8), as `parse_yaml` reads it."""
    return raw.removeprefix(codecs.BOM_UTF8).decode("utf-8")


_DIGEST: list[bytes] = []


def _parser_digest() -> bytes:
    """This module's code: a changed parser does not read entries of the old one."""
    if not _DIGEST:
        _DIGEST.append(hashlib.sha256(Path(__file__).read_bytes()).digest() + marshal.version.to_bytes(2, "big"))
    return _DIGEST[0]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# libyaml composes ~10x faster than the pure-Python parser (100k users: seconds, not a minute).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(source: bytes | str, file: str) -> Document:
    if isinstance(source, bytes):
        source = source.removeprefix(codecs.BOM_UTF8)
        try:
            text = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            byte_line = source[: exc.start].count(b"\n") + 1
            bad = source[exc.start]
            return _failed(file, byte_line, f"file is not UTF-8 text (byte 0x{bad:02x})")
    else:
        text = source
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        detail = "; ".join(str(part) for part in (exc.context, exc.problem) if part)
        return _failed(file, line, f"YAML syntax error: {detail}")
    except yaml.reader.ReaderError as exc:
        # Raised for characters YAML forbids (e.g. most control characters) in the stream.
        char_line = text[: exc.position].count("\n") + 1
        char = exc.character
        code = char if isinstance(char, int) else ord(str(char)[:1] or "?")
        return _failed(file, char_line, f"character U+{code:04X} is not allowed in a YAML file")
    except yaml.YAMLError as exc:
        return _failed(file, None, f"YAML error: {exc}")
    except RecursionError:
        return _failed(file, None, "YAML nesting is too deep")
    if root is None:
        return Document(file, None, Lines(1), [])
    builder = _Builder()
    data, _lines = builder.build(root, (), 0)
    problems = [
        Problem(file, line, format_key(data, path), message)
        for path, line, message in builder.problems
    ]
    return Document(file, data, None, problems, text)  # lines: see `Document._lines`


def _failed(file: str, line: int | None, message: str) -> Document:
    return Document(file, None, Lines(line or 1), [Problem(file, line, "", message)])


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _line_in(lines: Lines, key: PathPart) -> int:
    child = lines.children[key]
    return child if isinstance(child, int) else child.line


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_T) :] if tag.startswith(_T) else tag


class _Builder:
    """Builds values from nodes. An aliased node is built once and shared, so alias bombs cost
    nothing and a node that contains itself is caught instead of recursing forever."""

    def __init__(self) -> None:
        self.constructor = SafeConstructor()
        self.done: dict[Node, tuple[Any, Lines]] = {}
        self.active: set[Node] = set()
        self.problems: list[tuple[KeyPath, int, str]] = []

    def report(self, path: KeyPath, line: int, message: str) -> None:
        self.problems.append((path, line, message))

    def build(self, node: Node, path: KeyPath, depth: int) -> tuple[Any, Lines]:
        if node in self.done:
            return self.done[node]
        line = _line(node)
        if node in self.active:
            self.report(path, line, "an alias refers to its own anchor (recursive structure)")
            return INVALID, Lines(line)
        if depth > MAX_DEPTH:
            self.report(path, line, f"nested deeper than {MAX_DEPTH} levels")
            return INVALID, Lines(line)
        self.active.add(node)
        try:
            if isinstance(node, ScalarNode):
                result = self._scalar(node, path), Lines(line)
            elif isinstance(node, SequenceNode):
                result = self._sequence(node, path, depth)
            elif isinstance(node, MappingNode):
                result = self._mapping(node, path, depth)
            else:  # PyYAML has no other node kinds
                raise TypeError(type(node).__name__)
        finally:
            self.active.discard(node)
        self.done[node] = result
        return result

    def _bad_tag(self, node: Node, path: KeyPath) -> Any:
        self.report(
            path,
            _line(node),
            f"YAML tag {show(_tag_name(node.tag))} is not allowed (only plain text, numbers, "
            "true/false, lists and mappings)",
        )
        return INVALID

    def _scalar(self, node: ScalarNode, path: KeyPath) -> Any:
        if node.tag in _TEXT_TAGS:
            return node.value
        if node.tag not in _CONSTRUCTED_TAGS:
            return self._bad_tag(node, path)
        try:
            return self.constructor.construct_object(node)
        except (ValueError, KeyError, yaml.YAMLError):
            self.report(
                path, _line(node), f"{show(node.value)} is not a valid {_tag_name(node.tag)}"
            )
            return INVALID

    def _sequence(self, node: SequenceNode, path: KeyPath, depth: int) -> tuple[Any, Lines]:
        lines = Lines(_line(node))
        if node.tag != _SEQ:
            return self._bad_tag(node, path), lines
        items: list[Any] = []
        children = lines.children
        done, shallow = self.done, depth < MAX_DEPTH
        for index, child in enumerate(node.value):
            # A text scalar that `build` would return as is is taken directly, without the
            # per-node bookkeeping: most nodes are such scalars, they cannot recurse, and
            # building one twice gives the same value. One `build` has seen keeps its result.
            if (
                child.__class__ is ScalarNode
                and child.tag in _TEXT_TAGS
                and shallow
                and child not in done
            ):
                items.append(child.value)
                children[index] = child.start_mark.line + 1
                continue
            value, child_lines = self.build(child, path + (index,), depth + 1)
            items.append(value)
            children[index] = child_lines if child_lines.children else child_lines.line
        return items, lines

    def _mapping(self, node: MappingNode, path: KeyPath, depth: int) -> tuple[Any, Lines]:
        lines = Lines(_line(node))
        if node.tag != _MAP:
            return self._bad_tag(node, path), lines
        result: dict[str, Any] = {}
        merges: list[Node] = []
        children = lines.children
        done, shallow = self.done, depth < MAX_DEPTH
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1  # _line(), inline: this runs for every key
            if isinstance(key_node, ScalarNode) and key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            if not (isinstance(key_node, ScalarNode) and key_node.tag == _STR):
                is_scalar = isinstance(key_node, ScalarNode)
                what = show(key_node.value) if is_scalar else "a list or mapping"
                self.report(path, key_line, f"a key must be plain text, not {what} (quote it)")
                continue
            # Interned: 100,000 users share one "name" string instead of holding one each.
            key = sys.intern(key_node.value)
            if key in result:
                self.report(
                    path + (key,),
                    key_line,
                    f"duplicate key {show(key)} (first at line {_line_in(lines, key)}); "
                    "YAML would silently keep only the last one",
                )
                continue
            if (  # a text scalar taken directly, as in `_sequence`
                value_node.__class__ is ScalarNode
                and value_node.tag in _TEXT_TAGS
                and shallow
                and value_node not in done
            ):
                result[key] = value_node.value
                children[key] = key_line
                continue
            value, value_lines = self.build(value_node, path + (key,), depth + 1)
            result[key] = value
            # A value without children needs only its key's line (see `Lines`).
            children[key] = (
                Lines(key_line, value_lines.children) if value_lines.children else key_line
            )
        for source in merges:
            self._merge(source, path, depth, result, lines)
        return result, lines

    def _merge(
        self, source: Node, path: KeyPath, depth: int, result: dict[str, Any], lines: Lines
    ) -> None:
        """`<<: *anchor` (or a list of anchors): keys given explicitly, or by an earlier
        anchor in the list, win — the usual YAML merge-key meaning."""
        sources = source.value if isinstance(source, SequenceNode) else [source]
        for item in sources:
            if not isinstance(item, MappingNode):
                self.report(path, _line(item), "'<<' (merge) needs a mapping or a list of mappings")
                continue
            merged, merged_lines = self.build(item, path, depth + 1)
            if not isinstance(merged, dict):
                continue
            for key, value in merged.items():
                if key not in result:
                    result[key] = value
                    lines.children[key] = merged_lines.children[key]
