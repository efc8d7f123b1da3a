"""Fuzzing job files and command lines (issue #6): every bad input ends in one clear line on
stderr ("t2mpi: ...") and exit 2, never a traceback, a hang or a half-made job folder.

The CLI runs in this process (t2mpi.cli.main) for speed, with stdout and stderr encoded the way
the interpreter encodes them; test_in_process_equals_the_real_command checks a sample against
the installed `t2mpi` command. Commands that would launch MPI or submit to a scheduler (run,
submit) only ever get inputs that fail before launching (a launcher that does not exist is
always the last --set; run --dry-run, which launches nothing, reads the venv's own), and
client.execute / control.submit are tripwires that fail the test. The cases of commands that
read the venv's mpiexec (script, doctor, run --dry-run) are marked mpi, so that the MPI lane
runs them under MPICH and Open MPI.
The number of cases is fixed (derandomize=True): test_zz_case_count states it.
"""

from __future__ import annotations

import collections
import copy
import io
import json
import math
import os
import signal
import subprocess
import textwrap
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml
from conftest import PYTHON
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from t2mpi import cli, client
from t2mpi.job.spec import DEFAULTS, SCHEDULERS
from t2mpi.scheduler import control

CASE_LIMIT = 20.0  # seconds one case may take before it counts as a hang
NO_LAUNCHER = "/nonexistent/fuzz-mpiexec"
GUARD = ["--set", f"mpi.launcher={NO_LAUNCHER}"]  # last on every run/submit command line

# how many cases each fuzz test runs (hypothesis max_examples); test_zz_case_count checks them
# (the _mpi ones: commands that read the venv's mpiexec, which the MPI lane runs under each MPI)
EXAMPLES = {
    "job_files": 200,
    "job_files_mpi": 500,
    "job_files_launching": 300,
    "command_lines": 600,
    "command_lines_mpi": 300,
    "job_queries": 300,
}
CASES: collections.Counter[str] = collections.Counter()
OUTCOMES: collections.Counter[tuple[str, int]] = collections.Counter()  # (argv[0], exit status)
PACKAGED = json.dumps(DEFAULTS, sort_keys=True)


def fuzz_settings(name: str):
    return settings(
        max_examples=EXAMPLES[name],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


# ---------------------------------------------------------------- running the CLI in this process


class Hang(BaseException):
    """A case ran past CASE_LIMIT (raised by SIGALRM in the main thread)."""


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `t2mpi ARGV`, as the interpreter would give them: an
    uncaught exception prints its traceback and exits 1; stdout is strict UTF-8 and stderr
    UTF-8 with backslashreplace, as Python sets them up."""
    out, err = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", errors="strict", write_through=True)
    stderr = io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace", write_through=True)

    def alarm(signum, frame):
        raise Hang(f"t2mpi {argv!r} ran past {CASE_LIMIT} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_LIMIT)
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            try:
                code = cli.main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Hang:
                raise
            except BaseException:  # what the interpreter does with an uncaught exception
                traceback.print_exc()
                code = 1
            stdout.flush()
            stderr.flush()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return code, out.getvalue().decode("utf-8"), err.getvalue().decode("utf-8")


def tree(root: Path) -> set[str]:
    """Every path under root but the job-file folder and the launcher cache (~/.cache)."""
    found = set()
    for folder, dirs, files in os.walk(root):
        if Path(folder) == root:
            dirs[:] = [d for d in dirs if d not in ("jobfiles", ".cache")]
        rel = os.path.relpath(folder, root)
        found.update(os.path.join(rel, name) for name in dirs + files)
    return found


def one_error_line(code: int, out: str, err: str, argv: list[str]) -> str:
    """The case's stderr is one line `t2mpi: ...` and no traceback; returns the line."""
    assert "Traceback" not in err, f"t2mpi {argv!r}:\n{err}"
    assert err.startswith("t2mpi: ") and err.endswith("\n") and err.count("\n") == 1 and "\r" not in err, (
        f"t2mpi {argv!r} exit {code}: stderr is not one 't2mpi: ' line: {err!r}"
    )
    assert len(err.strip()) > len("t2mpi:"), err
    return err


def check_case(work: Path, argv: list[str], allowed: tuple[int, ...]) -> tuple[int, str, str]:
    """Run one case: its exit status is in `allowed`, a failure is one line, nothing is left."""
    before = tree(work)
    code, out, err = run_cli(argv)
    assert code in allowed, f"t2mpi {argv!r}: exit {code}, expected one of {allowed}\nstderr: {err}"
    if code == 0:
        assert "Traceback" not in err and out, (argv, out, err)
    else:
        one_error_line(code, out, err, argv)
    made = tree(work) - before
    assert not made, f"t2mpi {argv!r} left {sorted(made)}"
    assert json.dumps(DEFAULTS, sort_keys=True) == PACKAGED, f"t2mpi {argv!r} changed the packaged defaults"
    OUTCOMES[(argv[0] if argv else "", code)] += 1
    return code, out, err


@pytest.fixture
def fuzz_work(work: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The `work` folder (cwd and HOME) with a folder of job files and worker modules; launching
    and submitting are tripwires."""
    folder = work / "jobfiles"
    folder.mkdir()
    (folder / "fuzzworker.py").write_text(
        textwrap.dedent("""\
        from t2mpi import IWorker

        class Job(IWorker):
            def execute(self, ctx):
                return 1

        class NotWorker:
            pass
        """)
    )
    (folder / "fuzzbroken.py").write_text("raise RuntimeError('broken on import')\n")
    (folder / "valid.yaml").write_text("name: fz\nworker: fuzzworker:Job\n")

    def tripwire(*args, **kwargs):
        raise AssertionError("a fuzz case reached a launch or a submission")

    for module, name in ((client, "execute"), (client, "resume"), (control, "submit"), (control, "resubmit")):
        monkeypatch.setattr(module, name, tripwire, raising=False)
    return work


# ---------------------------------------------------------------- job files


def _key_paths(mapping: dict, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for key, value in mapping.items():
        paths.append(prefix + (key,))
        if isinstance(value, dict):
            paths.extend(_key_paths(value, prefix + (key,)))
    return paths


# the real key set: whatever the packaged defaults hold (new keys join by themselves), the
# required keys, and the per-scheduler site sections
KEY_PATHS = sorted(
    {
        ("name",),
        ("worker",),
        *_key_paths(DEFAULTS),
        *(
            ("scheduler", kind, key)
            for kind in SCHEDULERS
            for key in ("time", "partition", "account", "nodes", "launcher")
        ),
    }
)
SAFE_LAUNCHERS = [None, NO_LAUNCHER, "fuzz-no-such-mpiexec", "", "/", 7, ["mpiexec"], {"x": 1}]

# values near the valid ones, by key path (then by last key); the defaults' own value also counts
NEAR: dict[tuple[str, ...] | str, list] = {
    ("name",): ["fz", "a" * 64, "a" * 65, "-x", "x y", "ü", "", "fz\n", 3],
    ("worker",): [
        "fuzzworker:Job",
        "fuzzworker:Missing",
        "fuzzworker:NotWorker",
        "fz_nomodule:Job",
        "fuzzbroken:Job",
        "fuzzworker",
        ":Job",
        "fuzzworker:Job:x",
        "1x:Y",
        "fuzzworker.sub:Job",
        "fuzzworker :Job",
    ],
    ("workers",): [1, 2, 0, -1, 2**63, 10**30, "2", 1.5, True],
    ("mpi", "launcher"): SAFE_LAUNCHERS,
    ("jobs_dir",): ["jobs", "~/jobs", "./a/../b", "", "~nosuchuser/jobs", "a\x00b", "a\nb", "jobs\u2028x"],
    ("scratch_dir",): [None, "scratch", "~/s", "a\x00b", ""],
    ("scheduler", "launcher"): ["mpiexec", "srun", "aprun", ""],
    ("scheduler", "python"): [None, "/usr/bin/python3", "python3", "/a\nb", "/a\x00b"],
    "cpus": [1, 2, 0, -3, 2**40, 2**64],
    "threads": [1, 2, 0, 3, 2**64],
    "memory": [
        "512M",
        "1G",
        "0M",
        "1.5T",
        "512",
        "512X",
        "1e3G",
        "9" * 400 + "P",
        "9000P",
        "-1G",
        1024,
        "  2 GiB ",
        "0.0000001K",
        "nanG",
        "infG",
    ],
    "master": ["rank0", "client", "rank1"],
    "mode": ["none", "cores", "all"],
    "policy": ["compact", "spread", "random"],
    "near": ["none", "nic", "gpu"],
    "transport": ["auto", "tcp", "ib", "TCP"],
    "interface": [None, "lo", "e th0", "x;y", "nosuch0"],
    "ucx_tls": [None, "rc,ud", "x y"],
    "provider": [None, "x y", "nosuchprovider"],
    "args": [[], ["--mca", "btl", "self"], [1, 2.5], [None], "str", [["nested"]]],
    "env": [{}, {"A": "1"}, {"1A": "x"}, {"A": None}, {"A": "x\ny"}, {"A": [1]}, {"A": True}, {7: 1}],
    "start": [1, 0.5, 0, -1, True, math.nan, math.inf, -math.inf, "10", None, 1e308, 10**400],
    "kind": ["slurm", "pbs", "torque", "lsf", "SLURM"],
    "time": ["01:00:00", "1-00:00:00", "30", "0", "00:00", "1:2:3", "99:99", 61, 0, -5, "1h", 10**40, "9" * 5000],
    "partition": ["batch", "b q", "x" * 65, None, "", "a\nb"],
    "nodes": [None, 1, 0, -1, 10**20, "2"],
    "directives": [[], ["--exclusive"], ["a\nb"], "str", [1], [None]],
    "skip": [[], ["mem"], ["bogus"], "mem"],
    "prologue": [[], ["module load python"], ["echo 'unclosed"], ["   "], ["a\tb"], ["x\x00"]],
    "config": [{}, {"k": "v"}, [], "x", None],
}
for _key in ("barrier", "abort", "heartbeat", "progress"):
    NEAR[_key] = NEAR["start"]
for _key in ("account", "qos"):
    NEAR[_key] = NEAR["partition"]


def _near(path: tuple[str, ...]) -> st.SearchStrategy:
    values = NEAR.get(path) or NEAR.get(path[-1]) or []
    default = DEFAULTS
    for key in path:
        default = default.get(key) if isinstance(default, dict) else None
    return st.sampled_from([*values, default] if path != ("mpi", "launcher") else values).map(copy.deepcopy)


TEXT = st.text(st.characters(codec="utf-8"), max_size=20)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    TEXT,
    st.sampled_from(
        [
            2**63,
            -(2**63),
            10**100,
            -1,
            0,
            "",
            " ",
            "\t",
            "~",
            "null",
            "yes",
            "0x10",
            "1e3",
            "é",
            "\u202e",
            "a\x00b",
            "\x7f",
            "\ufeff",
            "\udcff",
            "--",
            "${HOME}",
            "$(id)",
        ]
    ),
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.one_of(TEXT, st.integers(), st.booleans(), st.none()), inner, max_size=3)
    ),
    max_leaves=8,
)


def _set(doc: dict, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        if not isinstance(doc.get(key), dict):
            doc[key] = {}
        doc = doc[key]
    doc[path[-1]] = value


def _delete(doc: dict, path: tuple[str, ...]) -> None:
    for key in path[:-1]:
        doc = doc.get(key)
        if not isinstance(doc, dict):
            return
    doc.pop(path[-1], None)


SNIPPETS = [
    "[",
    "]",
    "{",
    "}",
    ":",
    ": ",
    "- ",
    "\t",
    "&a ",
    "*a",
    "*nosuch",
    "!!python/object/apply:os.system [id]",
    "!!binary x",
    "? ",
    "%YAML 1.1\n",
    "%TAG ! tag:x,2000:\n",
    "---\n",
    "...\n",
    '"',
    "'",
    "#",
    "\x00",
    "\r",
    "\ufeff",
    "\n  ",
    "<<: *a\n",
    "!!int ",
    "!!float ",
    "!custom ",
    "|\n",
    ">-\n",
    "@",
    "`",
    "%",
]
WHOLE = [  # whole documents that walk the loader's own corners
    "",
    "\n",
    "---\n...\n",
    "null\n",
    "~\n",
    "[]\n",
    "- a\n- b\n",
    "42\n",
    "'text'\n",
    "--- a\n--- b\n",
    "name: fz\nname: fz\nworker: fuzzworker:Job\n",
    "name: fz\nworker: fuzzworker:Job\nconfig: &a {b: *a}\n",
    "name: fz\nworker: fuzzworker:Job\nconfig: {x: &a [*a]}\n",
    "name: fz\nworker: fuzzworker:Job\nconfig:\n  a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\n  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    "  g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n  h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n",
    "name: fz\nworker: fuzzworker:Job\nconfig: " + "[" * 900 + "]" * 900 + "\n",
    "name: fz\nworker: fuzzworker:Job\nconfig: " + "{a: " * 900 + "1" + "}" * 900 + "\n",
    "name: fz\nworker: fuzzworker:Job\nconfig: " + "[" * 5000 + "\n",
    "name: fz\nworker: fuzzworker:Job\n? [a, b]\n: 1\n",
    "name: fz\nworker: fuzzworker:Job\n{a: 1}: 2\n",
    "name: fz\nworker: fuzzworker:Job\n1: 2\nnull: 3\ntrue: 4\n",
    'name: fz\nworker: fuzzworker:Job\n"a\\nb": 1\n',
    'name: fz\nworker: fuzzworker:Job\nresources: {"cpus\\n": 1}\n',
    "name: fz\nworker: fuzzworker:Job\nworkers: 2024-01-01\n",
    'name: fz\nworker: fuzzworker:Job\nmpi: {env: {"A\\u2028B": 1}}\n',
    "<<: {name: fz, worker: 'fuzzworker:Job'}\n",
]


@st.composite
def job_documents(draw) -> bytes:
    """A job file: a valid mapping with mutations, written as YAML or JSON, then perhaps cut,
    spliced or given bytes that are not UTF-8."""
    if draw(st.integers(0, 9)) == 0:
        text = draw(st.sampled_from(WHOLE))
    else:
        doc: dict = {"name": "fz", "worker": "fuzzworker:Job"}
        for _ in range(draw(st.integers(0, 6))):
            path = draw(st.sampled_from(KEY_PATHS))
            action = draw(st.sampled_from(["near", "near", "near", "junk", "delete", "unknown"]))
            if action == "near":
                _set(doc, path, draw(_near(path)))
            elif action == "junk" and path != ("mpi", "launcher") and path[0] != "mpi":
                _set(doc, path, draw(JUNK))
            elif action == "delete":
                _delete(doc, path)
            elif action == "unknown":
                _set(
                    doc,
                    path[:-1] + (draw(st.one_of(TEXT, st.sampled_from(["resource", "worker s", "Name"]))) or "x",),
                    draw(JUNK),
                )
        top = draw(st.sampled_from(["mapping"] * 12 + ["list", "scalar", "null"]))
        if top == "list":
            doc = [doc]
        elif top == "scalar":
            doc = draw(SCALARS)
        elif top == "null":
            doc = None
        form = draw(st.sampled_from(["yaml", "yaml", "flow", "json", "unicode"]))
        if form == "json":
            text = json.dumps(doc, default=str)
        else:
            text = yaml.safe_dump(
                doc, default_flow_style=form == "flow", allow_unicode=form == "unicode", sort_keys=False
            )
    for _ in range(draw(st.integers(0, 2)) if draw(st.booleans()) else 0):
        at = draw(st.integers(0, len(text)))
        splice = draw(st.sampled_from(["snippet", "snippet", "cut", "line", "text"]))
        if splice == "snippet":
            text = text[:at] + draw(st.sampled_from(SNIPPETS)) + text[at:]
        elif splice == "cut":
            text = text[:at]
        elif splice == "line":
            lines = text.splitlines(keepends=True) or [""]
            line = draw(st.sampled_from(lines))
            text = text + line
        else:
            text = text[:at] + draw(TEXT) + text[at:]
    data = text.encode("utf-8", "surrogatepass")
    encoding = draw(st.sampled_from(["utf-8"] * 12 + ["bad-bytes", "utf-16", "latin-1"]))
    if encoding == "bad-bytes":
        at = draw(st.integers(0, len(data)))
        data = (
            data[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80", b"\xfe\xff"])) + data[at:]
        )
    elif encoding == "utf-16":
        data = text.encode("utf-16", "surrogatepass")
    elif encoding == "latin-1":
        data = text.encode("latin-1", "replace") + b"\nconfig: {x: \xe9}\n"
    return data


def write_job(work: Path, data: bytes) -> str:
    path = work / "jobfiles" / "job.yaml"
    path.write_bytes(data)
    return str(path)


PLAN_NODE = st.sampled_from(
    [["--sysfs"], ["--synthetic", "package:2 numa:2 core:4 pu:2"], ["--synthetic", "core:2"], []]
)


@fuzz_settings("job_files")
@given(data=job_documents(), node=PLAN_NODE)
def test_fuzzed_job_files_planned_end_in_one_line_or_succeed(fuzz_work, data, node):
    """plan makes nothing and launches nothing: a job file is either valid (exit 0, output on
    stdout) or one line on stderr and exit 2."""
    CASES["job_files"] += 1
    check_case(fuzz_work, ["plan", write_job(fuzz_work, data), *node], (0, 2))


@pytest.mark.mpi
@fuzz_settings("job_files_mpi")
@given(data=job_documents(), command=st.sampled_from(["script", "script-pbs", "doctor", "run-dry"]))
def test_fuzzed_job_files_end_in_one_line_or_succeed(fuzz_work, data, command):
    """script, doctor and run --dry-run read the venv's mpiexec (its flavour shapes the launch
    line they print) and make and launch nothing: a job file is either valid (exit 0, output on
    stdout) or one line on stderr and exit 2."""
    CASES["job_files_mpi"] += 1
    job = write_job(fuzz_work, data)
    argv = {
        "script": ["script", job],
        "doctor": ["doctor", job],
        "script-pbs": ["script", job, "--scheduler", "pbs"],
        "run-dry": ["run", job, "--dry-run"],
    }[command]
    check_case(fuzz_work, argv, (0, 2))


@fuzz_settings("job_files_launching")
@given(data=job_documents(), command=st.sampled_from(["run", "run-dry", "run-client", "submit"]))
def test_fuzzed_job_files_never_launch_and_leave_nothing(fuzz_work, data, command):
    """run and submit with any job file and a launcher that does not exist: exit 2, one line,
    no job folder (not even a hidden one)."""
    CASES["job_files_launching"] += 1
    job = write_job(fuzz_work, data)
    argv = {
        "run": ["run", job],
        "run-dry": ["run", job, "--dry-run"],
        "submit": ["submit", job],
        "run-client": ["run", job, "--master", "client"],
    }[command]
    code, out, err = check_case(fuzz_work, [*argv, *GUARD], (2,))
    if NO_LAUNCHER in err:  # valid up to the launch: stopped by the guard alone
        OUTCOMES[("(valid up to the launcher)", code)] += 1


# ---------------------------------------------------------------- command lines

ARG_TEXT = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12),
    st.sampled_from(
        [
            "",
            "-",
            "--",
            "-1",
            "0",
            "2",
            "999999999999999999999",
            "1e3",
            "x",
            "\udcff.yaml",
            "a\nb",
            " ",
            "=",
            "--set",
            "-n",
        ]
    ),
)
INTS = st.one_of(
    st.integers(-3, 8).map(str), st.sampled_from(["10000000000000000000000", "-0", "0x10", "٣", " 2"]), ARG_TEXT
)


def _dotted_key() -> st.SearchStrategy:
    real = st.sampled_from([".".join(p) for p in KEY_PATHS if p != ("mpi", "launcher")])
    mangled = st.sampled_from(
        [
            "",
            ".",
            "a..b",
            "workers.",
            ".workers",
            " workers ",
            "resources.cpus.x",
            "config.a.b.c",
            "name.x",
            "scheduler.slurm",
            "scheduler.pbs.time",
            "resource.cpus",
            "WORKERS",
            "mpi",
            "mpi.env.A",
            "mpi.env.1A",
            "config",
        ]
    )
    return st.one_of(
        real, real, mangled, st.text(st.characters(codec="utf-8", exclude_characters="\x00="), max_size=10)
    )


def _set_value(key: str) -> st.SearchStrategy:
    path = tuple(key.split("."))
    if path[0] == "mpi":  # never a launcher that might exist
        return st.sampled_from(["{}", "x", "[]", f"{{launcher: {NO_LAUNCHER}}}", "{args: [-v]}", "1", "{env: {A: 1}}"])
    near = _near(path) if path in KEY_PATHS else st.nothing()
    as_text = near.map(lambda v: yaml.safe_dump(v, default_flow_style=True).removesuffix("\n...\n").strip())
    return st.one_of(
        as_text,
        ARG_TEXT,
        JUNK.filter(lambda v: not isinstance(v, str) or "\x00" not in v).map(lambda v: json.dumps(v, default=str)),
    )


@st.composite
def overrides(draw) -> list[str]:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        key = draw(_dotted_key())
        form = draw(st.sampled_from(["kv", "kv", "kv", "novalue", "noeq"]))
        if form == "kv":
            out += ["--set", f"{key}={draw(_set_value(key))}".replace("\x00", "")]
        elif form == "novalue":
            out += ["--set", f"{key}="]
        else:
            out += ["--set", key]
    return out


def _options(draw, pool: dict[str, st.SearchStrategy | None]) -> list[str]:
    """A few options of `pool` (flag or option with a drawn value), a --set or two, junk tokens."""
    argv: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        what = draw(st.sampled_from(["option"] * 4 + ["abbrev", "junk"]))
        if what == "junk":
            token = draw(ARG_TEXT)
            if token.startswith("-h") or token.startswith("--h"):
                token = "--bogus"
            argv.append(token)
            continue
        name = draw(st.sampled_from(sorted(pool)))
        shown = name
        if what == "abbrev" and name.startswith("--") and len(name) > 4:
            shown = name[: draw(st.integers(3, len(name)))]
            if "--help".startswith(shown):
                shown = name
        argv.append(shown)
        if pool[name] is not None and draw(st.integers(0, 9)):
            argv.append(draw(pool[name]))
    return argv + draw(overrides())


SCHEDULER = st.one_of(st.sampled_from(["slurm", "pbs", "torque"]), ARG_TEXT)
NODE_SOURCE = {
    "--sysfs": None,
    "--synthetic": st.one_of(
        st.sampled_from(
            [
                "package:2 numa:2 core:4 pu:2",
                "core:2",
                "core:0",
                "pu:2",
                "numa:2",
                "core:2 pu:2 core:2",
                "package:4 core:64 pu:2",
                "[numa(1GiB)] core:2",
                "numa:2(memory=0GiB) core:2",
                "core:2 pu:2(indexes=core:pu)",
                "core:2 pu:2(indexes=9,9)",
                "machine:1 core:1",
                "",
                "numa:2(999999999999999999999TiB) core:2",
                "core:99999999999999999999",
                "package:1000 core:1000 pu:1000",
            ]
        ),
        ARG_TEXT,
    ),
    "--xml": st.sampled_from(["nosuch.xml", "jobfiles", "/dev/null", "", "jobfiles/valid.yaml"]),
}
QUERY = {"--jobs-dir": st.sampled_from(["jobs", "jobfiles", "jobfiles/valid.yaml", "", "~", "nosuch/x", "/"])}
COMMANDS = {  # each command's options: name -> value strategy (None: a flag)
    "run": {
        "-n": INTS,
        "--workers": INTS,
        "--master": st.one_of(st.sampled_from(["rank0", "client"]), ARG_TEXT),
        "--dry-run": None,
        "-q": None,
        "--quiet": None,
        "--report-bindings": None,
        "--oversubscribe": None,
    },
    "submit": {"-n": INTS, "--scheduler": SCHEDULER, "--wait": None},
    "script": {"-n": INTS, "--workers": INTS, "--scheduler": SCHEDULER},
    "plan": {"-n": INTS, "--nodes": INTS, **NODE_SOURCE},
    "doctor": {"--json": None},
    "topology": {"--json": None, **NODE_SOURCE},
    "status": {"--json": None, **QUERY},
    "logs": {"--worker": INTS, **QUERY},  # never --follow: a job found would be followed to its end
    "cancel": QUERY,
    "list": QUERY,
}
if "restart" in cli._COMMANDS:  # a job that is not there is never restarted
    COMMANDS["restart"] = {"-q": None, "--wait": None, **QUERY}
JOB_ARG = st.sampled_from(
    [
        "jobfiles/valid.yaml",
        "jobfiles/job.yaml",
        "nosuch.yaml",
        "jobfiles",
        "/dev/null",
        "a\nb.yaml",
        "\udcff.yaml",
        "",
        "-",
        "~/jobfiles/valid.yaml",
    ]
)


MPI_COMMANDS = ("script", "doctor")  # what they print depends on the venv's mpiexec


@st.composite
def command_lines(draw, commands: tuple[str, ...]) -> tuple[str, list[str]]:
    command = draw(st.sampled_from(commands))
    if command in ("bogus", ""):
        return command, [
            draw(st.sampled_from(["bogus", "", "--version", "-x", "RUN", "ru"])),
            *draw(st.lists(ARG_TEXT, max_size=2)),
        ]
    argv = [command]
    if command in ("run", "submit", "script", "plan") or (command == "doctor" and draw(st.booleans())):
        if draw(st.integers(0, 7)):
            argv.append(draw(JOB_ARG))
    elif command in ("status", "logs", "cancel", "restart") and draw(st.integers(0, 7)):
        argv.append(draw(st.one_of(ARG_TEXT, st.sampled_from(["fz-20240101-000000-abcd", "jobfiles", "."]))))
    argv += _options(draw, COMMANDS[command])
    if command in ("run", "submit"):
        argv += GUARD
    return command, argv


# what each command may end in: 0 where it makes nothing (a valid input), 1 only for a job that
# is not there (status/logs/cancel: JobError, as tests/test_slurm.py asserts), 2 for bad input
ALLOWED = {
    "run": (2,),
    "submit": (2,),
    "script": (0, 2),
    "plan": (0, 2),
    "doctor": (0, 2),
    "topology": (0, 2),
    "status": (1, 2),
    "logs": (1, 2),
    "cancel": (1, 2),
    "restart": (1, 2),
    "list": (0, 2),
    "bogus": (2,),
    "": (2,),
}


@fuzz_settings("command_lines")
@given(case=command_lines((*(c for c in COMMANDS if c not in MPI_COMMANDS), "bogus", "")), data=job_documents())
def test_fuzzed_command_lines(fuzz_work, case, data):
    """Any command line of a command that does not read the MPI (run and submit have a launcher
    that does not exist), with a fuzzed jobfiles/job.yaml beside a valid one."""
    CASES["command_lines"] += 1
    command, argv = case
    write_job(fuzz_work, data)
    check_case(fuzz_work, argv, ALLOWED[command])


@pytest.mark.mpi
@fuzz_settings("command_lines_mpi")
@given(case=command_lines(MPI_COMMANDS), data=job_documents())
def test_fuzzed_command_lines_of_commands_that_read_the_mpi(fuzz_work, case, data):
    """Any command line of script and doctor, with a fuzzed jobfiles/job.yaml beside a valid one."""
    CASES["command_lines_mpi"] += 1
    command, argv = case
    write_job(fuzz_work, data)
    check_case(fuzz_work, argv, ALLOWED[command])


@fuzz_settings("job_queries")
@given(
    command=st.sampled_from([c for c in ("status", "logs", "cancel", "restart", "list") if c in COMMANDS]),
    name=st.one_of(ARG_TEXT, st.sampled_from(["fz-20240101-000000-abcd", "jobfiles", ".", "..", "/"])),
    jobs_dir=st.one_of(st.none(), QUERY["--jobs-dir"], ARG_TEXT.filter(lambda t: not t.startswith("-"))),
    site=st.one_of(
        st.none(),
        st.sampled_from(
            [
                b"jobs_dir: 7\n",
                b"jobs_dir: ''\n",
                b"jobs_dir: [x]\n",
                b'jobs_dir: "a\\0b"\n',
                b"- x\n",
                b"jobs_dir: [\n",
                b"jobs_dir: ~/jobs\n",
                b"\xff: 1\n",
                b"name: x\n",
            ]
        ),
    ),
)
def test_fuzzed_job_queries(fuzz_work, monkeypatch, command, name, jobs_dir, site):
    """status, logs, cancel and list of jobs that are not there, under a fuzzed site config."""
    CASES["job_queries"] += 1
    if site is None:
        monkeypatch.delenv("T2MPI_CONFIG", raising=False)
    else:
        (fuzz_work / "jobfiles" / "site.yaml").write_bytes(site)
        monkeypatch.setenv("T2MPI_CONFIG", str(fuzz_work / "jobfiles" / "site.yaml"))
    argv = [command] + ([] if command == "list" else [name]) + ([] if jobs_dir is None else ["--jobs-dir", jobs_dir])
    check_case(fuzz_work, argv, ALLOWED[command])


# ---------------------------------------------------------------- the real command


REAL_CASES = [
    (["run", "jobfiles/bad.yaml"], b"name: fz\nworker: fuzzworker:Job\nresource: {cpus: 2}\n"),
    (["run", "jobfiles/bad.yaml"], b"name: fz\xff\nworker: fuzzworker:Job\n"),
    (["script", "jobfiles/bad.yaml"], b"name: fz\nworker: fuzzworker:Job\nconfig: &a {b: *a}\n"),
    (
        ["script", "jobfiles/bad.yaml", "--set", "resources.memory=" + "9" * 400 + "P"],
        b"name: fz\nworker: fuzzworker:Job\n",
    ),
    (["plan", "jobfiles/bad.yaml", "--sysfs", "--nodes", "0"], b"name: fz\nworker: fuzzworker:Job\n"),
    (["plan", "jobfiles/bad.yaml", "-n", "two"], b"name: fz\nworker: fuzzworker:Job\n"),
    (["submit", "a\nb.yaml", "--wait"], b""),
    (["status", "nosuch-job"], b""),
    (["list", "--jobs-dir", "jobfiles/bad.yaml"], b"x: 1\n"),
    (["script", "jobfiles/bad.yaml"], b"name: fz\nworker: fuzzworker:Job\n"),
]


@pytest.mark.mpi
def test_in_process_equals_the_real_command(fuzz_work):
    """A sample of cases through the installed `t2mpi` command: the same exit status, stdout and
    stderr as in this process (a valid `script` prints the venv's MPI's launch line)."""
    for argv, data in REAL_CASES:
        (fuzz_work / "jobfiles" / "bad.yaml").write_bytes(data)
        inside = run_cli(argv)
        # python -m t2mpi, not the console script: scripts print sys.executable, which is the
        # script's shebang (python3 or python, as pip wrote it) there and PYTHON here
        done = subprocess.run(
            [PYTHON, "-m", "t2mpi", *argv],
            cwd=fuzz_work,
            capture_output=True,
            timeout=60,
            env=dict(os.environ, HOME=str(fuzz_work)),
        )
        real = (done.returncode, done.stdout.decode(), done.stderr.decode())
        assert real == inside, (argv, real, inside)
        if real[0]:
            one_error_line(*real, argv)
    assert tree(fuzz_work) == set(), tree(fuzz_work)


# ---------------------------------------------------------------- what the fuzzing found

JOB = "name: fz\nworker: fuzzworker:Job\n"


def error_of(work: Path, argv: list[str], data: bytes | None = None) -> str:
    """The one error line of a case that must end in exit 2 and leave nothing."""
    if data is not None:
        write_job(work, data)
    code, out, err = check_case(work, [a.replace("JOB", str(work / "jobfiles" / "job.yaml")) for a in argv], (2,))
    return err


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"name: fz\xff\nworker: fuzzworker:Job\n", "job.yaml:1: not UTF-8 text (byte 0xff); save the file as UTF-8"),
        (b"name: fz\nworker: fuzzworker:Job\nconfig: {x: \xe9}\n", "job.yaml:3: not UTF-8 text (byte 0xe9)"),
    ],
)
def test_a_job_file_that_is_not_utf8(fuzz_work, data, expected):
    """Was: UnicodeDecodeError traceback, exit 1."""
    assert expected in error_of(fuzz_work, ["plan", "JOB", "--sysfs"], data)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("config: &a {b: *a}\n", "job.yaml:3: a YAML alias refers to an anchor that contains it (a loop)"),
        ("config: {x: &a [1, *a]}\n", "job.yaml:3: a YAML alias refers to an anchor that contains it"),
        ("config: " + "[" * 150 + "]" * 150 + "\n", "job.yaml:3: nested more than 100 levels deep"),
        ("config: " + "{a: " * 900 + "1" + "}" * 900 + "\n", "job.yaml:3: nested more than 100 levels deep"),
        (WHOLE[13].removeprefix(JOB), "job.yaml: its YAML aliases expand it to 54481019 values (at most 100000)"),
    ],
)
def test_yaml_loops_depth_and_alias_bombs(fuzz_work, text, expected):
    """Was: RecursionError traceback (a loop, deep mappings); an alias bomb was accepted and would
    have been written out whole into spec.json at launch."""
    assert expected in error_of(fuzz_work, ["script", "JOB"], (JOB + text).encode())


def test_only_aliases_count_against_the_size_limit(fuzz_work, monkeypatch):
    from t2mpi.job import layers

    monkeypatch.setattr(layers, "MAX_VALUES", 1000)
    write_job(fuzz_work, (JOB + "config: {x: [" + ", ".join(map(str, range(2000))) + "]}\n").encode())
    assert check_case(fuzz_work, ["plan", str(fuzz_work / "jobfiles" / "job.yaml"), "--sysfs"], (0,))
    text = JOB + "config: {x: &a [" + ", ".join(map(str, range(600))) + "], y: *a}\n"
    assert "job.yaml: its YAML aliases expand it to 1211 values (at most 1000)" in error_of(
        fuzz_work, ["plan", "JOB", "--sysfs"], text.encode()
    )


@pytest.mark.parametrize(
    "value, expected",
    [
        ("9" * 400 + "P", "is too large; at most 8191P"),
        ("9000P", "resources.memory: size '9000P' is too large; at most 8191P"),
    ],
)
def test_a_size_too_large(fuzz_work, value, expected):
    """Was: OverflowError traceback (float infinity); 9000P overflowed the planner's int64."""
    assert expected in error_of(
        fuzz_work, ["plan", "JOB", "--sysfs", "--set", f"resources.memory={value}"], JOB.encode()
    )


@pytest.mark.parametrize(
    "value, expected",
    [
        (".nan", "must be a number of seconds above 0, got nan"),
        (".inf", "must be at most 1e+09 seconds, got inf"),
        ("1" + "0" * 400, "must be at most 1e+09 seconds, got 1000"),
        ("1.0e+10", "must be at most 1e+09 seconds"),
    ],
)
def test_timeouts_must_be_finite_and_waitable(fuzz_work, value, expected):
    """Was: nan and inf accepted (a wait that never ends), 10**400 an OverflowError traceback,
    1e10 accepted though a lock's wait overflows past 9.2e9 s."""
    err = error_of(fuzz_work, ["script", "JOB"], (JOB + f"timeouts: {{heartbeat: {value}}}\n").encode())
    assert f"job.yaml:3: timeouts.heartbeat: {expected}" in err


@pytest.mark.parametrize("key", ["jobs_dir", "scratch_dir"])
def test_a_folder_with_a_nul(fuzz_work, key):
    """Was: ValueError (embedded null byte) traceback."""
    err = error_of(fuzz_work, ["script", "JOB"], (JOB + f'{key}: "a\\0b"\n').encode())
    assert f"job.yaml:3: {key}: 'a\\x00b' has a newline or another control character" in err


def test_a_site_jobs_dir_with_a_nul_is_ignored(fuzz_work, monkeypatch):
    """Was: ValueError traceback from status, logs, cancel and list."""
    (fuzz_work / "jobfiles" / "site.yaml").write_text('jobs_dir: "a\\0b"\n')
    monkeypatch.setenv("T2MPI_CONFIG", str(fuzz_work / "jobfiles" / "site.yaml"))
    code, out, err = check_case(fuzz_work, ["status", "nosuch"], (1,))
    assert f"no job 'nosuch' in {fuzz_work}/t2mpi-jobs" in err


@pytest.mark.parametrize("nodes", ["0", "-1", "100001", "1000000000000"])
def test_plan_nodes_out_of_range(fuzz_work, nodes):
    """Was: exit 1 for --nodes 0 (bad input is 2); a MemoryError or a hang for a huge count."""
    err = error_of(fuzz_work, ["plan", "JOB", "--sysfs", "--nodes", nodes], JOB.encode())
    assert err == f"t2mpi: --nodes {nodes}: give 1 to 100000\n"


def test_list_of_a_jobs_dir_that_is_a_file(fuzz_work):
    """Was: NotADirectoryError traceback."""
    err = error_of(fuzz_work, ["list", "--jobs-dir", "jobfiles/valid.yaml"])
    assert err.startswith("t2mpi: jobfiles/valid.yaml: not a folder")


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], "t2mpi: the following arguments are required: COMMAND (see t2mpi --help)\n"),
        (
            ["plan", "x.yaml", "-n", "two"],
            "t2mpi: plan: argument -n/--workers: invalid int value: 'two' (see t2mpi plan --help)\n",
        ),
        (["run", "x.yaml", "--bogus\nline"], "t2mpi: unrecognized arguments: --bogus\\nline (see t2mpi --help)\n"),
    ],
)
def test_usage_errors_are_one_line(fuzz_work, argv, expected):
    """Was: argparse's usage lines, then 't2mpi plan: error: ...' (no 't2mpi: ' line)."""
    assert error_of(fuzz_work, argv) == expected


@pytest.mark.parametrize(
    "argv, data, expected",
    [
        (["run", "a\nb.yaml"], None, "t2mpi: a\\nb.yaml: no such job file\n"),
        (["script", "JOB"], b'name: fz\nworker: fuzzworker:Job\n"a\\nb": 1\n', "job.yaml:3: unknown key ''a\\nb''"),
    ],
)
def test_a_newline_in_what_an_error_shows(fuzz_work, argv, data, expected):
    """Was: the error split over two lines."""
    assert expected in error_of(fuzz_work, argv, data)


TOPOLOGY_CASES = [  # found by the fuzz test in t2mpi/topology.py
    (["topology", "--synthetic", "core:99999999999999999999"], "was: an OverflowError traceback"),
    (["topology", "--synthetic", "package:1000 core:1000 pu:1000"], "was: no answer within 5 s"),
    (["topology", "--xml", "jobfiles/valid.yaml"], "was: a ValueError traceback from pyhwloc"),
]


@pytest.mark.parametrize("argv, today", TOPOLOGY_CASES)
def test_bad_topology_sources_are_one_line_errors(fuzz_work, argv, today):
    try:
        done = subprocess.run([PYTHON, "-m", "t2mpi", *argv], cwd=fuzz_work, capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"t2mpi {argv!r}: {today}")
    assert done.returncode == 2, (today, done.stderr[-300:])
    one_error_line(done.returncode, done.stdout, done.stderr, argv)


def case_count(lane: str) -> None:
    """States how many cases the fuzz tests of one lane ran (each its max_examples; derandomized)."""
    ran = {name: n for name, n in CASES.items() if n and name.endswith("_mpi") == (lane == "mpi")}
    if not ran:
        pytest.skip(f"no fuzz test of the {lane} lane ran in this session")
    print(f"\nfuzz cases: {dict(ran)}; total {sum(ran.values())}")
    print("exit status by command:", dict(sorted(OUTCOMES.items())))
    for name, n in ran.items():
        assert n == EXAMPLES[name], (name, n)


def test_zz_case_count():
    case_count("unit")


@pytest.mark.mpi
def test_zz_case_count_mpi():
    case_count("mpi")
