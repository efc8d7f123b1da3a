"""The import rules of docs/architecture.md, read from the source tree (not the installed copy).

Every t2mpi/**/*.py is parsed with ast; every import (absolute or relative, at module level or
inside a function) is resolved to a t2mpi module, and each rule below lists what breaks it as
`file:line imports module`.
"""

from __future__ import annotations

import ast
import functools
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

PACKAGE = Path(__file__).resolve().parents[1] / "t2mpi"
ROOT = PACKAGE.parent

SHIMS = ("launch.py", "network.py", "restart.py")
SLOW_STDLIB = ("typing", "dataclasses", "argparse")  # what a rank must not pay for at start-up
RANK_ROOTS = (
    "t2mpi.runtime.entry",
    "t2mpi.runtime.worker",
    "t2mpi.runtime.master",
    "t2mpi.runtime.serve",
    "t2mpi.runtime.channel",
    "t2mpi.resources.binding",
    "t2mpi.resources.nodeplan",
    "t2mpi.resources.autobind",
    "t2mpi.resources.threads",
)
MAX_LINES = 520


class Import(NamedTuple):
    file: str  # relative to the repository, e.g. t2mpi/runtime/entry.py
    line: int
    target: str  # the module imported: t2mpi.x.y, or a stdlib/third-party name as written
    scope: str  # "top" (runs on import), "type_checking", "main" (if __name__ == "__main__"), "function"
    relative: bool

    def __str__(self) -> str:
        return f"{self.file}:{self.line} imports {self.target}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def _sources() -> dict[str, Path]:
    """Module name -> source file, for every t2mpi/**/*.py."""
    files = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
    assert files, f"no sources under {PACKAGE}"
    return {_module_name(p): p for p in files}


@functools.cache
def _built_modules() -> frozenset[str]:
    """Modules that exist only once built: t2mpi/*.py.in and meson's extension modules."""
    names = {f"t2mpi.{p.name.removesuffix('.py.in')}" for p in PACKAGE.glob("*.py.in")}
    meson = ROOT / "meson.build"
    if meson.exists():
        names |= {f"t2mpi.{n}" for n in re.findall(r"extension_module\(\s*'(\w+)'", meson.read_text())}
    return frozenset(names)


def _is_module(name: str) -> bool:
    return name in _sources() or name in _built_modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_main_guard(test: ast.expr) -> bool:
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def _imports_of(path: Path) -> list[Import]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    file = path.relative_to(ROOT).as_posix()
    found: list[Import] = []

    def add(node: ast.Import | ast.ImportFrom, scope: str) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(file, node.lineno, alias.name, scope, False))
            return
        if node.level:
            parts = package.split(".")
            assert node.level - 1 < len(parts), f"{file}:{node.lineno}: relative import beyond the package"
            base = ".".join(parts[: len(parts) - (node.level - 1)])
            if node.module:
                base = f"{base}.{node.module}"
        else:
            base = node.module or ""
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            target = sub if base.startswith("t2mpi") and _is_module(sub) else base
            found.append(Import(file, node.lineno, target, scope, bool(node.level)))

    def walk(body: list[ast.stmt], scope: str) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                add(node, scope)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):  # nested functions and classes included
                    if isinstance(sub, (ast.Import, ast.ImportFrom)):
                        add(sub, "function")
            elif isinstance(node, ast.If):
                if scope == "top" and _is_type_checking(node.test):
                    walk(node.body, "type_checking")
                elif scope == "top" and _is_main_guard(node.test):
                    walk(node.body, "main")
                else:
                    walk(node.body, scope)
                walk(node.orelse, scope)
            else:  # class bodies, try, with, for, while, match: run when their block runs
                for field in ("body", "orelse", "finalbody"):
                    walk(getattr(node, field, None) or [], scope)
                for handler in getattr(node, "handlers", None) or []:
                    walk(handler.body, scope)
                for case in getattr(node, "cases", None) or []:
                    walk(case.body, scope)

    walk(ast.parse(path.read_text(), filename=str(path)).body, "top")
    return found


@functools.cache
def import_graph() -> dict[str, tuple[Import, ...]]:
    """Module name -> every import in its source file."""
    return {name: tuple(_imports_of(path)) for name, path in _sources().items()}


def _under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _t2mpi_imports(subpackage: str) -> list[Import]:
    return [
        i
        for module, imports in import_graph().items()
        if _under(module, f"t2mpi.{subpackage}")
        for i in imports
        if _under(i.target, "t2mpi")
    ]


def _report(rule: str, bad: list[Import]) -> str:
    return f"{rule}:\n  " + "\n  ".join(dict.fromkeys(map(str, bad)))


def test_the_graph_is_read_from_the_source_tree() -> None:
    graph = import_graph()
    assert "t2mpi.runtime.entry" in graph and "t2mpi.job.spec" in graph
    entry = {i.target for i in graph["t2mpi.runtime.entry"]}
    assert {"t2mpi.errors", "t2mpi.job.folder", "t2mpi.runtime.channel"} <= entry, entry
    assert any(i.scope == "function" for i in graph["t2mpi.runtime.entry"])


def test_runtime_never_imports_the_client_side() -> None:
    bad = [i for i in _t2mpi_imports("runtime") if _under(i.target, "t2mpi.cli", "t2mpi.client", "t2mpi.scheduler")]
    assert not bad, _report("t2mpi/runtime/ imports cli, client or scheduler", bad)


def test_resources_and_net_never_import_runtime_or_client_side() -> None:
    forbidden = ("t2mpi.runtime", "t2mpi.cli", "t2mpi.client", "t2mpi.scheduler")
    bad = [i for sub in ("resources", "net") for i in _t2mpi_imports(sub) if _under(i.target, *forbidden)]
    assert not bad, _report("t2mpi/resources/ or t2mpi/net/ imports runtime, cli, client or scheduler", bad)


def test_job_imports_only_job_and_errors() -> None:
    bad = [i for i in _t2mpi_imports("job") if not _under(i.target, "t2mpi.job", "t2mpi.errors")]
    assert not bad, _report("t2mpi/job/ imports another t2mpi sub-package", bad)


def test_mpi_imports_only_mpi_job_and_errors() -> None:
    # t2mpi.procs is allowed as well: it is the one place that runs subprocesses (house rule 3),
    # and a leaf (see test_procs_is_a_leaf), so the launcher's `mpiexec --version` goes through it.
    allowed = ("t2mpi.mpi", "t2mpi.job", "t2mpi.errors", "t2mpi.procs")
    bad = [i for i in _t2mpi_imports("mpi") if not _under(i.target, *allowed)]
    assert not bad, _report("t2mpi/mpi/ imports beyond mpi, job, errors and procs", bad)


def test_procs_and_errors_are_leaves() -> None:
    graph = import_graph()
    bad = [i for i in graph["t2mpi.procs"] if _under(i.target, "t2mpi") and i.target != "t2mpi.errors"]
    bad += [i for i in graph["t2mpi.errors"] if _under(i.target, "t2mpi")]
    assert not bad, _report("t2mpi/procs.py imports more than t2mpi.errors, or t2mpi/errors.py imports t2mpi", bad)


def test_data_never_imports_client_side_net_or_mpi() -> None:
    forbidden = ("t2mpi.cli", "t2mpi.client", "t2mpi.scheduler", "t2mpi.net", "t2mpi.mpi")
    bad = [i for i in _t2mpi_imports("data") if _under(i.target, *forbidden)]
    assert not bad, _report("t2mpi/data/ imports cli, client, scheduler, net or mpi", bad)


def test_runtime_imports_data_only_lazily() -> None:
    imports = [i for i in _t2mpi_imports("runtime") if _under(i.target, "t2mpi.data")]
    bad = [i for i in imports if i.scope in ("top", "main")]
    assert not bad, _report("t2mpi/runtime/ imports t2mpi.data at module level (import it inside the function)", bad)


def test_stream_never_imports_client_side_net_mpi_or_runtime() -> None:
    forbidden = ("t2mpi.cli", "t2mpi.client", "t2mpi.scheduler", "t2mpi.net", "t2mpi.mpi", "t2mpi.runtime")
    bad = [i for i in _t2mpi_imports("stream") if _under(i.target, *forbidden)]
    assert not bad, _report("t2mpi/stream/ imports cli, client, scheduler, net, mpi or runtime", bad)


def test_runtime_imports_stream_only_lazily() -> None:
    imports = [i for i in _t2mpi_imports("runtime") if _under(i.target, "t2mpi.stream")]
    bad = [i for i in imports if i.scope in ("top", "main")]
    assert imports, "ctx.stream should import t2mpi.stream (inside the property)"
    assert not bad, _report("t2mpi/runtime/ imports t2mpi.stream at module level (import it inside the function)", bad)


def _stream_windowers(path: Path, node: ast.stmt) -> bool:
    """The one exception: t2mpi/stream/__init__.py names the windowers of the issue's API
    (`from t2mpi.stream import tumbling`), from its small module of pure classes."""
    if path != PACKAGE / "stream" / "__init__.py":
        return False
    if isinstance(node, ast.ImportFrom):
        return node.level == 1 and node.module == "windows"
    return isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__all__"]


def test_subpackage_inits_hold_only_a_docstring() -> None:
    inits = sorted(PACKAGE.glob("*/__init__.py"))
    assert len(inits) >= 7, inits
    bad = []
    for path in inits:
        for node in ast.parse(path.read_text()).body:
            if _stream_windowers(path, node):
                continue
            if not (
                isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} has {type(node).__name__}")
    assert not bad, "a sub-package __init__.py holds code (only a docstring is allowed):\n  " + "\n  ".join(bad)


def test_imports_inside_the_package_are_relative() -> None:
    bad = [i for imports in import_graph().values() for i in imports if _under(i.target, "t2mpi") and not i.relative]
    assert not bad, _report("absolute import of t2mpi inside t2mpi/ (use a relative import)", bad)


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts))]


def rank_closure() -> set[str]:
    """The t2mpi modules a rank imports at start-up: the top-level import closure of RANK_ROOTS
    (with their packages' __init__), not counting `if TYPE_CHECKING:` or function-level imports."""
    graph = import_graph()
    todo = [m for root in RANK_ROOTS for m in (*_parents(root), root)]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen or module not in graph:
            continue
        seen.add(module)
        for i in graph[module]:
            if i.scope == "top" and _under(i.target, "t2mpi"):
                todo.extend((*_parents(i.target), i.target))
    return seen


def test_rank_closure_is_computed() -> None:
    closure = rank_closure()
    assert set(RANK_ROOTS) <= closure
    assert {"t2mpi", "t2mpi.runtime", "t2mpi.errors", "t2mpi.job.states"} <= closure, sorted(closure)
    assert "t2mpi.cli" not in closure and "t2mpi.client" not in closure, sorted(closure)


def test_rank_modules_import_no_typing_dataclasses_or_argparse() -> None:
    graph = import_graph()
    bad = [
        i
        for module in sorted(rank_closure())
        for i in graph[module]
        if i.scope == "top" and not i.relative and i.target.split(".")[0] in SLOW_STDLIB
    ]
    assert not bad, _report(
        "a module every rank imports imports typing, dataclasses or argparse at module level "
        f"(closure of {', '.join(RANK_ROOTS)}; use `if TYPE_CHECKING:` or import inside a function)",
        bad,
    )


def test_a_rank_start_loads_no_typing_dataclasses_or_argparse(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import t2mpi.runtime.entry, t2mpi.runtime.worker\n"
        f"slow = {SLOW_STDLIB!r}\n"
        "print('loaded:', sorted(m for m in slow if m in sys.modules and m not in before))\n"
        "print('t2mpi:', 't2mpi.runtime.entry' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "t2mpi: True" in done.stdout, done.stdout
    assert "loaded: []" in done.stdout, f"importing the rank entry and worker loads {done.stdout.splitlines()[0]}"


def test_shims_are_short() -> None:
    lengths = {name: len((PACKAGE / name).read_text().splitlines()) for name in SHIMS}
    long = {name: n for name, n in lengths.items() if n >= 10}
    assert not long, f"shims of 10 lines or more (they only forward to the module that does the work): {long}"


def test_no_module_is_over_the_size_limit() -> None:
    lengths = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in _sources().values()}
    assert len(lengths) > 20
    big = {f: n for f, n in sorted(lengths.items()) if n > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (house rule 9: ~500): {big}"


def test_meson_installs_every_module() -> None:
    """meson has no glob: a module missing from meson.build is silently left out of the wheel."""
    listed = set(re.findall(r"'(t2mpi/[^']+\.py)'", (ROOT / "meson.build").read_text()))
    present = {str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    assert present - listed == set(), f"not in meson.build: {sorted(present - listed)}"
    assert listed - present == set(), f"in meson.build but not in the tree: {sorted(listed - present)}"


def test_only_the_rank_entry_names_comm_world() -> None:
    """A worker's MPI.COMM_WORLD is rebound to the workers' communicator (mpi.world), so t2mpi's
    own code in the ranks must hold the launch's world in its own variables: only the rank
    entry reads MPI.COMM_WORLD, in code that runs before the rebinding or in the master."""
    uses = {
        (path.relative_to(ROOT).as_posix(), _enclosing(tree, node))
        for path in _sources().values()
        for tree in [ast.parse(path.read_text())]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Attribute, ast.Name, ast.alias))
        and "COMM_WORLD" in (getattr(node, "attr", None), getattr(node, "id", None), getattr(node, "name", None))
    }
    entry = "t2mpi/runtime/entry.py"
    assert uses == {
        (entry, "main"),  # before any worker rebinds it
        (entry, "_spawned_worker"),  # a spawned worker's world is the workers already
        (entry, "_spawning_master"),  # the master: never rebound
        (entry, "_name_world"),  # the rebinding itself
    }, sorted(uses)


def _enclosing(tree: ast.AST, target: ast.AST) -> str:
    """The name of the innermost function around `target` ('<module>' at the top)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(n is target for n in ast.walk(node)):
            inner = _enclosing(ast.Module(body=node.body, type_ignores=[]), target)
            return node.name if inner == "<module>" else inner
    return "<module>"
