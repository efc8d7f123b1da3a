"""YAML layers for the job spec: each file read with the file:line of every key, merged in order.

Where maps a key path to where its value was set ("file:line", "--set a.b", "-n/--workers").
"""

from __future__ import annotations

from .errors import SpecError

TYPE_CHECKING = False   # typing costs every rank start-up time; annotations are strings
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
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else {}
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{path}{line}: not valid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(f"{path}:1: the top level must be a mapping of keys, got {kind_of(data)}")
    _record_lines(node, (), str(path), where)
    return data


def _record_lines(node: Any, path: tuple[str, ...], fname: str, where: Where) -> None:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for key_node, value_node in node.value:
        key = str(key_node.value)
        if key in seen:
            raise SpecError(f"{fname}:{key_node.start_mark.line + 1}: key "
                            f"'{'.'.join(path + (key,))}' appears twice")
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
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping", type(None): "nothing"}.get(type(value), type(value).__name__)
