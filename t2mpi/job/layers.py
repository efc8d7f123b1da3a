"""YAML layers for the job spec: each file read with the file:line of every key, merged in order.

Where maps a key path to where its value was set ("file:line", "--set a.b", "-n/--workers").
"""

from __future__ import annotations

from ..errors import SpecError

TYPE_CHECKING = False  # typing costs every rank start-up time; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

Where = dict[tuple[str, ...], str]


def read_yaml(path: str, where: Where) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise SpecError(
            f"{path}:{line}: not UTF-8 text (byte {exc.object[exc.start]:#04x}); save the file as UTF-8"
        ) from None
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_shape(node, str(path))
            data = loader.construct_document(node) if node is not None else {}
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{path}{line}: not valid YAML: {problem}") from None
    # a tag's constructor: !!int on a word (ValueError) or on nothing (IndexError)
    except (ValueError, TypeError, OverflowError, IndexError) as exc:
        raise SpecError(f"{path}: not valid YAML: a tagged value cannot be read ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(f"{path}:1: the top level must be a mapping of keys, got {kind_of(data)}")
    _record_lines(node, (), str(path), where)
    return data


MAX_DEPTH = 100  # nesting levels a YAML document may have
MAX_VALUES = 100_000  # values aliases may expand a YAML document to (it is copied and written out whole)


def _check_shape(root: Any, fname: str) -> None:
    """Refuse a document nested past MAX_DEPTH, one whose aliases loop (an anchor inside
    itself), or one that aliases expand past MAX_VALUES values. Walks the node graph without
    recursion, each node once."""
    import yaml

    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    todo: list[tuple[Any, int, bool]] = [(root, 1, False)]
    while todo:
        node, depth, closing = todo.pop()
        children = (
            [n for pair in node.value for n in pair]
            if isinstance(node, yaml.MappingNode)
            else node.value
            if isinstance(node, yaml.SequenceNode)
            else []
        )
        if closing:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_nodes:
            raise SpecError(
                f"{fname}:{node.start_mark.line + 1}: a YAML alias refers to an anchor "
                "that contains it (a loop); a job file must be a tree"
            )
        if depth > MAX_DEPTH:
            raise SpecError(f"{fname}:{node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
        open_nodes.add(id(node))
        todo.append((node, depth, True))
        todo.extend((child, depth + 1, False) for child in children)
    expanded = sizes[id(root)]
    if expanded > MAX_VALUES and expanded > len(sizes):
        raise SpecError(
            f"{fname}: its YAML aliases expand it to {expanded} values (at most {MAX_VALUES}); "
            "write the data out without aliases"
        )


def _record_lines(node: Any, path: tuple[str, ...], fname: str, where: Where) -> None:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for key_node, value_node in node.value:
        key = str(key_node.value)
        if key in seen:
            raise SpecError(f"{fname}:{key_node.start_mark.line + 1}: key '{'.'.join(path + (key,))}' appears twice")
        seen.add(key)
        where[path + (key,)] = f"{fname}:{key_node.start_mark.line + 1}"
        _record_lines(value_node, path + (key,), fname, where)


def merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep_copy(v) for v in value]
    return value


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """'resources.cpus=2' -> (('resources', 'cpus'), 2); the value is read as a YAML scalar."""
    import yaml

    key, sep, raw = text.partition("=")
    path = tuple(key.strip().split("."))
    if not sep or not all(path):
        raise SpecError(f"--set {text!r}: write key=value, e.g. --set resources.cpus=2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_override(data: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    nested: Any = value
    for key in reversed(path):
        nested = {key: nested}
    return merge(data, nested)


def kind_of(value: Any) -> str:
    """'a list', 'an integer', … for messages."""
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        type(None): "nothing",
    }.get(type(value), type(value).__name__)
