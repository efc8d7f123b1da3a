"""Unit tests of the job spec: t2mpi.job.spec.load() and its layers, sizes, and the worker loader.

Every load passes its own environ (HOME in tmp_path) so the user's real site config never leaks in.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import textwrap

import pytest

from t2mpi.errors import SpecError
from t2mpi.job import spec as spec_mod
from t2mpi.job.spec import JobSpec, MpiOptions, Resources, Timeouts, load, parse_size
from t2mpi.runtime.worker import IWorker, load_worker_class

MIN_JOB = "name: hello\nworker: hello:Hello\n"
VALID_KEYS = "binding, config, jobs_dir, keep_scratch, master, max_restarts, mpi, name, network, resources, scheduler, scratch_dir, timeouts, worker, workers"


def write(path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture
def env(tmp_path):
    """An environment without site config or launcher: HOME is an empty folder."""
    home = tmp_path / "home"
    home.mkdir()
    return {"HOME": str(home)}


def job(tmp_path, text: str, name: str = "job.yaml") -> str:
    return write(tmp_path / name, text)


def load_error(*args, **kwargs) -> str:
    with pytest.raises(SpecError) as info:
        load(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    return message


# ---------------------------------------------------------------- a valid job


def test_valid_job_resolves_every_field(tmp_path, env, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    monkeypatch.chdir(run_dir)
    path = job(
        tmp_path / "jobs",
        """\
        name: hello
        worker: hello:Hello
        workers: 4
        resources:
          cpus: 2
          threads: 2
          memory: 512M
        config: {greeting: hi, nested: {n: 3}}
        """,
    )
    s = load(path, environ=env)
    assert isinstance(s, JobSpec)
    assert s.name == "hello"
    assert s.worker == "hello:Hello"
    assert s.worker_dir == os.path.realpath(tmp_path / "jobs")
    assert os.path.isabs(s.worker_dir)
    assert s.workers == 4
    assert s.world_size == 5
    assert s.resources == Resources(cpus=2, threads=2, memory=512 * 2**20, data_memory=None)
    assert s.config == {"greeting": "hi", "nested": {"n": 3}}
    # the default jobs_dir ./t2mpi-jobs is made absolute against the working folder
    assert os.path.isabs(s.jobs_dir)
    assert s.jobs_dir == os.path.realpath(run_dir / "t2mpi-jobs")
    assert s.scratch_dir is None
    assert s.mpi == MpiOptions(launcher=None, args=(), env=(), world="workers", oversubscribe=False)
    assert s.timeouts == Timeouts(
        start=120.0, barrier=300.0, abort=10.0, heartbeat=60.0, progress=None, checkpoint=30.0
    )
    assert all(isinstance(t, float) for t in s.timeouts[:4])
    assert s.source == path


def test_minimal_job_takes_the_packaged_defaults(tmp_path, env):
    s = load(job(tmp_path, MIN_JOB), environ=env)
    assert s.workers == 1
    assert s.resources == Resources(1, 1, 2**30, None)
    assert s.config == {}
    assert s.mpi == MpiOptions(None, (), (), "workers", False)


def test_loading_does_not_change_the_packaged_defaults(tmp_path, env):
    before = json.dumps(spec_mod.DEFAULTS, sort_keys=True)
    s = load(
        job(tmp_path, MIN_JOB + "config: {}\n"), environ=env, overrides=["config.x=1", "mpi.args=[-v]", "mpi.env.A=1"]
    )
    assert s.config == {"x": 1}
    assert json.dumps(spec_mod.DEFAULTS, sort_keys=True) == before
    assert load(job(tmp_path, MIN_JOB, "other.yaml"), environ=env).config == {}


def test_absolute_and_relative_dirs(tmp_path, env, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load(job(tmp_path, MIN_JOB + f"jobs_dir: {tmp_path}/a/../jobs\nscratch_dir: scratch\n"), environ=env)
    assert s.jobs_dir == os.path.realpath(tmp_path / "jobs")
    assert s.scratch_dir == os.path.realpath(tmp_path / "scratch")


def test_tilde_in_jobs_dir_uses_the_given_home(tmp_path, env):
    s = load(job(tmp_path, MIN_JOB + "jobs_dir: ~/jobs\n"), environ=env)
    assert s.jobs_dir == os.path.realpath(os.path.join(env["HOME"], "jobs"))


def test_mpi_options_are_normalised(tmp_path, env):
    s = load(
        job(
            tmp_path,
            MIN_JOB
            + textwrap.dedent("""\
        mpi:
          launcher: /opt/mpi/bin/mpiexec
          args: [--bind-to, none, -n, 2, 1.5]
          env: {OMP_NUM_THREADS: 4, DEBUG: true, QUIET: false, NAME: x}
        """),
        ),
        environ=env,
    )
    assert s.mpi.launcher == "/opt/mpi/bin/mpiexec"
    assert s.mpi.args == ("--bind-to", "none", "-n", "2", "1.5")
    assert s.mpi.env == (("OMP_NUM_THREADS", "4"), ("DEBUG", "1"), ("QUIET", "0"), ("NAME", "x"))


def test_mpi_world_and_oversubscribe_are_checked(tmp_path, env):
    path = job(tmp_path, MIN_JOB + "mpi:\n  world: all\n  oversubscribe: true\n")
    s = load(path, environ=env)
    assert (s.mpi.world, s.mpi.oversubscribe) == ("all", True)
    assert load_error(path, environ=env, overrides=["mpi.world=everyone"]) == (
        "--set mpi.world: mpi.world: 'everyone': use workers or all"
    )
    assert load_error(path, environ=env, overrides=["mpi.oversubscribe=yes please"]) == (
        "--set mpi.oversubscribe: mpi.oversubscribe: must be true or false, got a string 'yes please'"
    )


def test_empty_job_file_misses_name(tmp_path, env):
    path = job(tmp_path, "")
    assert load_error(path, environ=env) == f"{path}: required key 'name' is missing"


# ---------------------------------------------------------------- layers


SITE = """\
    resources:
      cpus: 8
      memory: 2G
    timeouts:
      barrier: 60
    mpi:
      args: [--site]
    jobs_dir: {jobs}
    config: {{from_site: 1, greeting: site}}
    """


def test_site_config_from_T2MPI_CONFIG_lies_under_the_job_file(tmp_path, env):
    site = write(tmp_path / "etc" / "site.yaml", SITE.format(jobs=tmp_path / "site-jobs"))
    path = job(tmp_path, MIN_JOB + "resources: {cpus: 4}\nconfig: {greeting: job}\n")
    s = load(path, environ=dict(env, T2MPI_CONFIG=site))
    assert s.resources == Resources(cpus=4, threads=1, memory=2 * 2**30, data_memory=None)  # cpus: job; memory: site
    assert s.timeouts == Timeouts(120.0, 60.0, 10.0, 60.0, None, 30.0)
    assert s.mpi.args == ("--site",)
    assert s.jobs_dir == os.path.realpath(tmp_path / "site-jobs")
    assert s.config == {"from_site": 1, "greeting": "job"}  # mappings merge key by key


def test_site_config_from_home(tmp_path, env):
    write(tmp_path / "home" / ".config" / "t2mpi" / "config.yaml", SITE.format(jobs=tmp_path / "home-jobs"))
    s = load(job(tmp_path, MIN_JOB), environ=env)
    assert s.resources.cpus == 8
    assert s.timeouts.barrier == 60.0
    assert s.jobs_dir == os.path.realpath(tmp_path / "home-jobs")


def test_T2MPI_CONFIG_replaces_the_home_config(tmp_path, env):
    write(tmp_path / "home" / ".config" / "t2mpi" / "config.yaml", "resources: {cpus: 8}\n")
    site = write(tmp_path / "site.yaml", "resources: {cpus: 3}\n")
    s = load(job(tmp_path, MIN_JOB), environ=dict(env, T2MPI_CONFIG=site))
    assert s.resources.cpus == 3


def test_T2MPI_CONFIG_missing_file(tmp_path, env):
    missing = str(tmp_path / "nope.yaml")
    msg = load_error(job(tmp_path, MIN_JOB), environ=dict(env, T2MPI_CONFIG=missing))
    assert msg == f"$T2MPI_CONFIG={missing}: no such file"


def test_command_line_lies_over_the_job_file(tmp_path, env):
    site = write(tmp_path / "site.yaml", "resources: {cpus: 8}\n")
    path = job(tmp_path, MIN_JOB + "workers: 4\nresources: {cpus: 4}\nconfig: {greeting: hi, n: 1}\n")
    s = load(
        path, environ=dict(env, T2MPI_CONFIG=site), workers=7, overrides=["resources.cpus=2", "config.greeting=yo"]
    )
    assert s.workers == 7
    assert s.resources.cpus == 2
    assert s.config == {"greeting": "yo", "n": 1}


def test_later_overrides_win(tmp_path, env):
    s = load(job(tmp_path, MIN_JOB), environ=env, overrides=["workers=2", "workers=3"])
    assert s.workers == 3


def test_launcher_layers(tmp_path, env):
    site = write(tmp_path / "site.yaml", "mpi: {launcher: /site/mpiexec}\n")
    plain = job(tmp_path, MIN_JOB, "plain.yaml")
    own = job(tmp_path, MIN_JOB + "mpi: {launcher: /job/mpiexec}\n", "own.yaml")
    with_site = dict(env, T2MPI_CONFIG=site)
    both = dict(with_site, T2MPI_MPIEXEC="/env/mpiexec")
    assert load(plain, environ=with_site).mpi.launcher == "/site/mpiexec"
    assert load(plain, environ=both).mpi.launcher == "/env/mpiexec"  # env over site
    assert load(own, environ=both).mpi.launcher == "/job/mpiexec"  # job file over env
    assert load(own, environ=both, overrides=["mpi.launcher=/cli/mpiexec"]).mpi.launcher == "/cli/mpiexec"
    assert load(plain, environ=dict(env, T2MPI_MPIEXEC="")).mpi.launcher is None  # empty: unset


@pytest.mark.parametrize("key, line", [("name", "name: x"), ("worker", "worker: m:C"), ("workers", "workers: 4")])
def test_site_config_may_not_name_the_job(tmp_path, env, key, line):
    site = write(tmp_path / "site.yaml", f"resources: {{cpus: 2}}\n{line}\n")
    msg = load_error(job(tmp_path, MIN_JOB), environ=dict(env, T2MPI_CONFIG=site))
    assert msg == f"{site}:2: '{key}' belongs in a job file, not the site config"


def test_a_bad_site_value_names_the_site_file(tmp_path, env):
    site = write(tmp_path / "site.yaml", "timeouts:\n  start: 5\nresources:\n  cpus: 0\n")
    msg = load_error(job(tmp_path, MIN_JOB), environ=dict(env, T2MPI_CONFIG=site))
    assert msg == f"{site}:4: resources.cpus: must be at least 1, got 0"


def test_an_unknown_site_key_names_the_site_file(tmp_path, env):
    site = write(tmp_path / "site.yaml", "timeout: {start: 5}\n")
    msg = load_error(job(tmp_path, MIN_JOB), environ=dict(env, T2MPI_CONFIG=site))
    assert msg.startswith(f"{site}:1: unknown key 'timeout'; did you mean 'timeouts'?")


def test_bad_values_from_the_command_line_name_the_option(tmp_path, env):
    path = job(tmp_path, MIN_JOB + "workers: 2\nresources: {cpus: 2}\n")
    assert load_error(path, environ=env, workers=0) == "-n/--workers: workers: must be at least 1, got 0"
    assert (
        load_error(path, environ=env, overrides=["resources.cpus=0"])
        == "--set resources.cpus: resources.cpus: must be at least 1, got 0"
    )
    assert (
        load_error(path, environ=env, overrides=["resources.cpu=2"])
        == "--set resources.cpu: unknown key 'resources.cpu'; did you mean 'cpus'? "
        "(valid keys here: cpus, data_memory, memory, threads)"
    )


def test_an_unknown_key_from_set_names_the_option(tmp_path, env):
    msg = load_error(job(tmp_path, MIN_JOB), environ=env, overrides=["resourcs.cpus=2"])
    assert msg.startswith("--set resourcs.cpus: unknown key 'resourcs'; did you mean 'resources'?")


# ---------------------------------------------------------------- YAML problems


def test_bad_yaml_reports_the_line(tmp_path, env):
    path = job(tmp_path, MIN_JOB + "workers: 2\n  cpus: 3\n")
    assert load_error(path, environ=env) == f"{path}:4: not valid YAML: mapping values are not allowed in this context"


def test_unclosed_flow_mapping_reports_a_line(tmp_path, env):
    path = job(tmp_path, MIN_JOB + "config: {a: 1\n")
    msg = load_error(path, environ=env)
    assert msg.startswith(f"{path}:4: not valid YAML: ")
    assert "'}'" in msg


def test_two_documents_are_refused(tmp_path, env):
    path = job(tmp_path, MIN_JOB + "---\nname: other\n")
    assert load_error(path, environ=env).startswith(f"{path}:3: not valid YAML: ")


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "a list"), ("hello\n", "a string"), ("42\n", "an integer")])
def test_top_level_must_be_a_mapping(tmp_path, env, text, kind):
    path = job(tmp_path, text)
    assert load_error(path, environ=env) == f"{path}:1: the top level must be a mapping of keys, got {kind}"


def test_duplicate_top_level_key(tmp_path, env):
    path = job(tmp_path, MIN_JOB + "workers: 2\nworkers: 3\n")
    assert load_error(path, environ=env) == f"{path}:4: key 'workers' appears twice"


def test_duplicate_nested_key(tmp_path, env):
    path = job(tmp_path, MIN_JOB + "resources:\n  cpus: 1\n  memory: 1G\n  cpus: 2\n")
    assert load_error(path, environ=env) == f"{path}:6: key 'resources.cpus' appears twice"


def test_duplicate_key_in_site_config(tmp_path, env):
    site = write(tmp_path / "site.yaml", "mpi:\n  args: []\n  args: [-v]\n")
    msg = load_error(job(tmp_path, MIN_JOB), environ=dict(env, T2MPI_CONFIG=site))
    assert msg == f"{site}:3: key 'mpi.args' appears twice"


def test_missing_job_file(tmp_path, env):
    path = str(tmp_path / "nope.yaml")
    assert load_error(path, environ=env) == f"{path}: no such job file"


def test_a_folder_is_not_a_job_file(tmp_path, env):
    assert load_error(str(tmp_path), environ=env) == f"{tmp_path}: no such job file"


# ---------------------------------------------------------------- unknown keys


def test_unknown_top_level_key_lists_valid_keys_and_suggests(tmp_path, env):
    path = job(tmp_path, MIN_JOB + "resource: {cpus: 2}\n")
    assert load_error(path, environ=env) == (
        f"{path}:3: unknown key 'resource'; did you mean 'resources'? (valid keys here: {VALID_KEYS})"
    )


@pytest.mark.parametrize(
    "text, line, key, hint, valid",
    [
        ("resources:\n  cpu: 2\n", 4, "resources.cpu", "cpus", "cpus, data_memory, memory, threads"),
        (
            "timeouts:\n  strat: 5\n",
            4,
            "timeouts.strat",
            "start",
            "abort, barrier, checkpoint, heartbeat, progress, start",
        ),
        ("mpi:\n  launch: x\n", 4, "mpi.launch", "launcher", "args, env, launcher, oversubscribe, world"),
    ],
)
def test_unknown_nested_key(tmp_path, env, text, line, key, hint, valid):
    path = job(tmp_path, MIN_JOB + text)
    assert load_error(path, environ=env) == (
        f"{path}:{line}: unknown key '{key}'; did you mean '{hint}'? (valid keys here: {valid})"
    )


def test_unknown_key_without_a_close_match_has_no_suggestion(tmp_path, env):
    path = job(tmp_path, MIN_JOB + "zzzzzz: 1\n")
    msg = load_error(path, environ=env)
    assert msg == f"{path}:3: unknown key 'zzzzzz' (valid keys here: {VALID_KEYS})"
    assert "did you mean" not in msg


def test_config_keys_are_free(tmp_path, env):
    s = load(job(tmp_path, MIN_JOB + "config: {anything: 1, resources: 2}\n"), environ=env)
    assert s.config == {"anything": 1, "resources": 2}


# ---------------------------------------------------------------- types and values


@pytest.mark.parametrize(
    "text, line, message",
    [
        ('workers: "four"\n', 3, "workers: must be a whole number, got a string 'four'"),
        ("workers: true\n", 3, "workers: must be a whole number, got a boolean True"),
        ("workers: 2.0\n", 3, "workers: must be a whole number, got a number 2.0"),
        ("resources:\n  cpus: 1.5\n", 4, "resources.cpus: must be a whole number, got a number 1.5"),
        ("resources: 4\n", 3, "resources: must be a mapping, got an integer"),
        ("config: [1]\n", 3, "config: must be a mapping, got a list"),
        ("config: x\n", 3, "config: must be a mapping, got a string"),
        ("mpi: [a]\n", 3, "mpi: must be a mapping, got a list"),
        ("timeouts: 5\n", 3, "timeouts: must be a mapping, got an integer"),
        ("jobs_dir: 5\n", 3, "jobs_dir: must be a string, got an integer"),
        ("mpi:\n  launcher: [a]\n", 4, "mpi.launcher: must be a string, got a list"),
    ],
)
def test_wrong_types(tmp_path, env, text, line, message):
    path = job(tmp_path, MIN_JOB + text)
    assert load_error(path, environ=env) == f"{path}:{line}: {message}"


def test_name_of_the_wrong_type(tmp_path, env):
    path = job(tmp_path, "name: 123\nworker: hello:Hello\n")
    assert load_error(path, environ=env) == f"{path}:1: name: must be a string, got an integer"


@pytest.mark.parametrize("workers, shown", [("0", "0"), ("-3", "-3")])
def test_workers_at_least_one(tmp_path, env, workers, shown):
    path = job(tmp_path, MIN_JOB + f"workers: {workers}\n")
    assert load_error(path, environ=env) == f"{path}:3: workers: must be at least 1, got {shown}"


def test_threads_above_cpus(tmp_path, env):
    path = job(tmp_path, MIN_JOB + "resources:\n  cpus: 2\n  threads: 4\n")
    msg = load_error(path, environ=env)
    assert msg.startswith(f"{path}:5: resources.threads: 4 threads need at least 4 cpus, but resources.cpus is 2")


def test_threads_equal_to_cpus_is_fine(tmp_path, env):
    s = load(job(tmp_path, MIN_JOB + "resources: {cpus: 4, threads: 4}\n"), environ=env)
    assert (s.resources.cpus, s.resources.threads) == (4, 4)


@pytest.mark.parametrize(
    "value, message",
    [
        ("lots", "resources.memory: cannot read size 'lots'; write e.g. 512M, 4G or 1.5T"),
        ("512", "resources.memory: size 512 has no unit; write e.g. 512M or 512G"),
        ("'512'", "resources.memory: size '512' has no unit; write e.g. 512M or 512G"),
        ("0G", "resources.memory: size '0G' must be more than zero"),
        ("1.5", "resources.memory: expected a size such as 512M or 4G, got 1.5"),
    ],
)
def test_memory_unreadable(tmp_path, env, value, message):
    path = job(tmp_path, MIN_JOB + f"resources:\n  memory: {value}\n")
    assert load_error(path, environ=env) == f"{path}:4: {message}"


@pytest.mark.parametrize(
    "value, nbytes",
    [
        ("512M", 512 * 2**20),
        ("1.5G", 3 * 2**29),
        ("2GiB", 2 * 2**30),
        ("4096K", 4 * 2**20),
        ("2gb", 2 * 2**30),
        ("1T", 2**40),
    ],
)
def test_memory_units(tmp_path, env, value, nbytes):
    s = load(job(tmp_path, MIN_JOB + f"resources: {{memory: {value}}}\n"), environ=env)
    assert s.resources.memory == nbytes


@pytest.mark.parametrize("name", ["bad name!", "../x", ".hidden", "a/b", "-dash", "x" * 65])
def test_name_invalid(tmp_path, env, name):
    path = job(tmp_path, f"name: {json.dumps(name)}\nworker: hello:Hello\n")
    msg = load_error(path, environ=env)
    assert msg.startswith(f"{path}:1: name: {name!r} is not valid: use letters, digits, '_', '.', '-'")


@pytest.mark.parametrize("name", ["a", "job-1.v2_x", "7up", "x" * 64])
def test_name_valid(tmp_path, env, name):
    assert load(job(tmp_path, f"name: {json.dumps(name)}\nworker: hello:Hello\n"), environ=env).name == name


@pytest.mark.parametrize("worker", ["hello", "hello.Hello", "hello:", ":Hello", "1mod:C", "a:b:C", "a-b:C"])
def test_worker_not_module_colon_class(tmp_path, env, worker):
    path = job(tmp_path, f"name: hello\nworker: {json.dumps(worker)}\n")
    assert load_error(path, environ=env) == (
        f"{path}:2: worker: {worker!r} is not valid: write module:Class, e.g. hello:Hello"
    )


def test_dotted_worker_module(tmp_path, env):
    assert load(job(tmp_path, "name: a\nworker: pkg.sub.mod:Cls\n"), environ=env).worker == "pkg.sub.mod:Cls"


@pytest.mark.parametrize(
    "text",
    [
        'name: "hello\\n"\nworker: hello:Hello\n',
        'name: hello\nworker: "hello:Hello\\n"\n',
        'name: hello\nworker: hello:Hello\nmpi: {env: {"FOO\\n": x}}\n',
    ],
)
def test_trailing_newline_is_refused(tmp_path, env, text):
    load_error(job(tmp_path, text), environ=env)


def test_empty_name_message_says_it_is_empty(tmp_path, env):
    msg = load_error(job(tmp_path, 'name: ""\nworker: hello:Hello\n'), environ=env)
    assert msg.startswith(f"{tmp_path / 'job.yaml'}:1: name: ")
    assert "got a string" not in msg


@pytest.mark.parametrize(
    "text, key",
    [("worker: hello:Hello\n", "name"), ("name: hello\n", "worker"), ("name: ~\nworker: hello:Hello\n", "name")],
)
def test_missing_name_or_worker(tmp_path, env, text, key):
    path = job(tmp_path, text)
    assert load_error(path, environ=env) == f"{path}: required key '{key}' is missing"


@pytest.mark.parametrize(
    "text",
    [
        "mpi:\n  args: --verbose\n",
        "mpi:\n  args: {a: 1}\n",
        "mpi:\n  args: [[-v]]\n",
        "mpi:\n  args: [~]\n",
    ],
)
def test_mpi_args_not_a_list_of_strings(tmp_path, env, text):
    path = job(tmp_path, MIN_JOB + text)
    assert load_error(path, environ=env) == (
        f"{path}:4: mpi.args: must be a list of strings, e.g. [--mca, btl, self,tcp]"
    )


@pytest.mark.parametrize("var", ["1BAD", "A-B", "A B", "X.Y"])
def test_mpi_env_bad_variable_name(tmp_path, env, var):
    path = job(tmp_path, MIN_JOB + f"mpi:\n  env:\n    OK: 1\n    {json.dumps(var)}: x\n")
    assert load_error(path, environ=env) == (f"{path}:6: mpi.env.{var}: is not a valid environment variable name")


@pytest.mark.parametrize("value, kind", [("[1]", "a list"), ("{a: 1}", "a mapping"), ("~", "nothing")])
def test_mpi_env_value_must_be_a_string(tmp_path, env, value, kind):
    path = job(tmp_path, MIN_JOB + f"mpi:\n  env:\n    X: {value}\n")
    assert load_error(path, environ=env) == f"{path}:5: mpi.env.X: must be a string, got {kind}"


def test_mpi_env_not_a_mapping(tmp_path, env):
    path = job(tmp_path, MIN_JOB + "mpi:\n  env: [A=1]\n")
    assert load_error(path, environ=env) == f"{path}:4: mpi.env: must be a mapping, got a list"


@pytest.mark.parametrize("value, shown", [("-5", "-5"), ("0", "0"), ("soon", "'soon'"), ("true", "True")])
def test_timeouts_must_be_positive_seconds(tmp_path, env, value, shown):
    path = job(tmp_path, MIN_JOB + f"timeouts:\n  barrier: {value}\n")
    assert load_error(path, environ=env) == (
        f"{path}:4: timeouts.barrier: must be a number of seconds above 0, got {shown}"
    )


def test_fractional_timeouts(tmp_path, env):
    s = load(job(tmp_path, MIN_JOB + "timeouts: {start: 0.5, abort: 2}\n"), environ=env)
    assert s.timeouts == Timeouts(0.5, 300.0, 2.0, 60.0, None, 30.0)


# ---------------------------------------------------------------- --set


@pytest.mark.parametrize("text", ["noequals", "=3", " =3", "a..b=1", ".a=1", "a.=1"])
def test_set_malformed(tmp_path, env, text):
    msg = load_error(job(tmp_path, MIN_JOB), environ=env, overrides=[text])
    assert msg == f"--set {text!r}: write key=value, e.g. --set resources.cpus=2"


def test_set_nested_keys(tmp_path, env):
    path = job(tmp_path, MIN_JOB + "resources: {cpus: 4, memory: 1G}\nconfig: {a: {b: 1, c: 2}}\n")
    s = load(
        path,
        environ=env,
        overrides=[
            "resources.memory=2G",
            "timeouts.barrier=5",
            "mpi.env.OMP_NUM_THREADS=4",
            "config.a.b=x",
            "mpi.args=[-v, --tag-output]",
            "config.empty=",
            "config.broken=[1",
        ],
    )
    assert s.resources == Resources(4, 1, 2 * 2**30, None)
    assert s.timeouts.barrier == 5.0
    assert s.mpi.env == (("OMP_NUM_THREADS", "4"),)
    assert s.mpi.args == ("-v", "--tag-output")
    assert s.config == {"a": {"b": "x", "c": 2}, "empty": "", "broken": "[1"}


def test_set_values_are_yaml_scalars(tmp_path, env):
    s = load(
        job(tmp_path, MIN_JOB),
        environ=env,
        overrides=["config.i=3", "config.f=1.5", "config.b=true", "config.s=hello world", "config.eq=a=b"],
    )
    assert s.config == {"i": 3, "f": 1.5, "b": True, "s": "hello world", "eq": "a=b"}


def test_set_a_wrong_type(tmp_path, env):
    msg = load_error(job(tmp_path, MIN_JOB), environ=env, overrides=["workers=many"])
    assert msg == "--set workers: workers: must be a whole number, got a string 'many'"


def test_parse_override():
    assert spec_mod.parse_override("resources.cpus=2") == (("resources", "cpus"), 2)
    assert spec_mod.parse_override(" workers = 3") == (("workers",), 3)


# ---------------------------------------------------------------- the resolved object


def test_to_dict_from_dict_round_trip(tmp_path, env):
    s = load(
        job(
            tmp_path,
            MIN_JOB
            + textwrap.dedent("""\
        workers: 3
        resources: {cpus: 2, memory: 3G}
        config: {greeting: hi, list: [1, 2]}
        scratch_dir: /tmp/x
        mpi: {launcher: mpiexec, args: [-v, 2], env: {A: 1, B: x}}
        timeouts: {start: 1.5}
        """),
        ),
        environ=env,
    )
    d = s.to_dict()
    assert d["resources"] == {"cpus": 2, "threads": 1, "memory": 3 * 2**30, "data_memory": None}
    assert d["timeouts"] == {
        "start": 1.5,
        "barrier": 300.0,
        "abort": 10.0,
        "heartbeat": 60.0,
        "progress": None,
        "checkpoint": 30.0,
    }
    assert d["mpi"]["env"] == (("A", "1"), ("B", "x"))
    assert JobSpec.from_dict(d) == s
    through_json = json.loads(json.dumps(dict(d, job_id="hello-1")))  # as spec.json holds it
    back = JobSpec.from_dict(through_json)
    assert back == s
    assert isinstance(back.resources, Resources) and isinstance(back.timeouts, Timeouts)
    assert back.mpi.args == ("-v", "2") and back.mpi.env == (("A", "1"), ("B", "x"))


def test_jobspec_is_immutable(tmp_path, env):
    s = load(job(tmp_path, MIN_JOB), environ=env)
    with pytest.raises(AttributeError):
        s.workers = 3
    with pytest.raises(AttributeError):
        s.resources.cpus = 2
    with pytest.raises(AttributeError):
        s.new_field = 1
    with pytest.raises(TypeError):
        s.mpi.args[0] = "x"  # type: ignore[index]


# ---------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    "text, nbytes",
    [
        ("1K", 1024),
        ("512M", 512 * 2**20),
        ("512MB", 512 * 2**20),
        ("512MiB", 512 * 2**20),
        ("512mib", 512 * 2**20),
        (" 4G ", 4 * 2**30),
        ("1.5T", 3 * 2**39),
        ("1P", 2**50),
        ("4096 K", 4 * 2**20),
        ("1.1K", 1126),
    ],
)
def test_parse_size(text, nbytes):
    assert parse_size(text) == nbytes


@pytest.mark.parametrize(
    "value, fragment",
    [
        (512, "size 512 has no unit"),
        ("512", "size '512' has no unit"),
        ("0M", "must be more than zero"),
        ("0.0001K", "must be more than zero"),
        ("lots", "cannot read size 'lots'"),
        ("-1G", "cannot read size"),
        ("512Mi", "cannot read size"),
        ("", "cannot read size"),
        ("1000B", "cannot read size"),
        (1.5, "expected a size"),
        (True, "expected a size"),
        (None, "expected a size"),
        ([1], "expected a size"),
    ],
)
def test_parse_size_errors(value, fragment):
    with pytest.raises(ValueError) as info:
        parse_size(value)
    assert fragment in str(info.value)


# ---------------------------------------------------------------- the worker class


@pytest.fixture
def worker_job(tmp_path, env, monkeypatch):
    """Returns make(module_source, class_name='Cls') -> (spec, module_name), with a unique module name;
    sys.path and sys.modules are restored afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    made: list[str] = []

    def make(source: str | None, class_name: str = "Cls", suffix: str = "") -> tuple[JobSpec, str]:
        module = f"w_{tmp_path.name}{suffix}"
        made.append(module)
        if source is not None:
            write(tmp_path / f"{module}.py", source)
        importlib.invalidate_caches()
        s = load(job(tmp_path, f"name: w\nworker: {module}:{class_name}\n"), environ=env)
        return s, module

    yield make
    for module in made:
        sys.modules.pop(module, None)


def worker_error(s: JobSpec) -> str:
    with pytest.raises(SpecError) as info:
        load_worker_class(s)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_worker_class_loads(worker_job, tmp_path):
    s, module = worker_job(
        "from t2mpi import IWorker\nclass Cls(IWorker):\n    def execute(self, ctx):\n        return 1\n"
    )
    cls = load_worker_class(s)
    assert cls.__name__ == "Cls" and issubclass(cls, IWorker)
    assert sys.modules[module].__file__ == str(tmp_path / f"{module}.py")


def test_worker_module_missing_names_the_folder(worker_job, tmp_path):
    s, module = worker_job(None)
    assert worker_error(s) == (
        f"{s.source}: worker: {module}:Cls: no module '{module}' in {os.path.realpath(tmp_path)} "
        "(the worker module is looked up beside the job file)"
    )


def test_worker_class_missing(worker_job):
    s, module = worker_job("from t2mpi import IWorker\nclass Other(IWorker):\n    pass\n")
    msg = worker_error(s)
    assert msg.startswith(f"{s.source}: worker: {module}:Cls: module '{module}' (")
    assert msg.endswith(f"{module}.py) has no class 'Cls'")


@pytest.mark.parametrize(
    "body", ["class Cls:\n    def execute(self, ctx):\n        pass\n", "Cls = 42\n", "def Cls(ctx):\n    pass\n"]
)
def test_worker_class_not_an_iworker(worker_job, body):
    s, module = worker_job(body)
    assert worker_error(s) == f"{s.source}: worker: {module}:Cls: 'Cls' is not a subclass of t2mpi.IWorker"


def test_worker_module_raising_at_import(worker_job):
    s, module = worker_job("raise RuntimeError('boom at import')\n")
    assert worker_error(s) == (
        f"{s.source}: worker: {module}:Cls: importing '{module}' failed: RuntimeError: boom at import"
    )


def test_worker_module_with_a_syntax_error(worker_job):
    s, module = worker_job("def broken(:\n")
    assert worker_error(s).startswith(f"{s.source}: worker: {module}:Cls: importing '{module}' failed: SyntaxError: ")


def test_worker_module_importing_a_missing_module(worker_job):
    s, module = worker_job("import zz_t2mpi_no_such_dependency\n")
    assert worker_error(s) == (
        f"{s.source}: worker: {module}:Cls: importing '{module}' failed: No module named 'zz_t2mpi_no_such_dependency'"
    )


def test_worker_module_importing_a_missing_prefix_module(worker_job, tmp_path):
    dependency = f"w_{tmp_path.name}"  # the worker module is named w_<tmp>_worker
    s, module = worker_job(f"import {dependency}\n", suffix="_worker")
    assert worker_error(s) == (
        f"{s.source}: worker: {module}:Cls: importing '{module}' failed: No module named '{dependency}'"
    )


def test_data_memory_is_a_size_within_the_memory(tmp_path, env):
    s = load(job(tmp_path, MIN_JOB + "resources: {memory: 2G, data_memory: 256M}\n"), environ=env)
    assert s.resources.data_memory == 256 * 2**20 and s.resources.memory == 2 * 2**30
    assert load(job(tmp_path, MIN_JOB), environ=env).resources.data_memory is None  # half the memory
    path = job(tmp_path, MIN_JOB + "resources:\n  memory: 1G\n  data_memory: 2G\n")
    assert load_error(path, environ=env) == (
        f"{path}:5: resources.data_memory: {2 * 2**30} bytes is more than resources.memory ({2**30} bytes); "
        "a worker's data operations hold part of its memory"
    )
    path = job(tmp_path, MIN_JOB + "resources:\n  data_memory: 512\n")
    assert (
        load_error(path, environ=env)
        == f"{path}:4: resources.data_memory: size 512 has no unit; write e.g. 512M or 512G"
    )


@pytest.mark.parametrize("text", ["!!int ", "name: x\nworker: a:B\nworkers: !!int\n", "!!float "])
def test_a_tag_on_nothing_is_one_line(tmp_path, env, text):
    path = job(tmp_path, text)
    assert load_error(path, environ=env).startswith(f"{path}: not valid YAML: a tagged value cannot be read")
