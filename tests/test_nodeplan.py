"""This node's plan, remembered (t2mpi.resources.nodeplan): the same plan as the planner's, made
once per key, and read back without numpy or the topology."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import namedtuple

import pytest

from t2mpi.resources import nodeplan
from t2mpi.resources.placement import PlacementError, plan
from t2mpi.resources.topology import from_sysfs

Resources = namedtuple("Resources", "cpus threads memory")
ONE = Resources(1, 1, 64 << 20)


def test_the_plan_is_the_planners(tmp_path):
    made = nodeplan.node_plan(1, ONE, "compact", cache=str(tmp_path))
    placed = plan([from_sysfs()], 1, 1, 1, 64 << 20, "compact")
    assert made["parts"] == [
        {
            "cores": list(placed.worker(0).cores),
            "thread_cores": list(placed.worker(0).thread_cores),
            "numa": placed.worker(0).numa,
        }
    ]
    assert made["master_pu"] == placed.master_pu and made["master_shares_with"] == placed.master_shares_with
    assert made["facts"]["allowed"] and made["facts"]["hostname"] == os.uname().nodename
    assert nodeplan.part(made, 0) == nodeplan.Part(
        0, placed.worker(0).cores, placed.worker(0).thread_cores, placed.worker(0).numa
    )


def test_it_is_made_once_per_key_and_read_back(tmp_path, monkeypatch):
    first = nodeplan.node_plan(1, ONE, "compact", cache=str(tmp_path))
    (kept,) = tmp_path.iterdir()
    assert json.loads(kept.read_text())["key"] == nodeplan.plan_key(1, ONE, "compact", None)
    made = []
    monkeypatch.setattr(nodeplan, "make_plan", lambda *a: made.append(a) or {"parts": []})
    assert nodeplan.node_plan(1, ONE, "compact", cache=str(tmp_path)) == first  # remembered
    assert not made
    nodeplan.node_plan(1, ONE, "spread", cache=str(tmp_path))  # another request, another key
    nodeplan.node_plan(1, Resources(1, 1, 32 << 20), "compact", cache=str(tmp_path))
    assert len(made) == 2 and len(list(tmp_path.iterdir())) == 3


def test_the_key_holds_what_the_plan_depends_on():
    key = json.loads(nodeplan.plan_key(2, ONE, "compact", None))
    assert key["host"] == os.uname().nodename
    assert key["cpuset"] and key["online"] and key["boot"]
    assert key["request"] == [2, 1, 1, 64 << 20, "compact", None]
    assert nodeplan.plan_key(2, ONE, "compact", 1) != nodeplan.plan_key(2, ONE, "compact", None)


@pytest.mark.parametrize("text", ["{not json", '{"key": "another", "plan": {"parts": []}}', "[]"])
def test_a_kept_plan_that_is_broken_or_not_this_keys_is_made_again(tmp_path, text):
    good = nodeplan.node_plan(1, ONE, "compact", cache=str(tmp_path))
    (kept,) = tmp_path.iterdir()
    kept.write_text(text)
    assert nodeplan.node_plan(1, ONE, "compact", cache=str(tmp_path)) == good
    assert json.loads(kept.read_text())["plan"] == good  # and kept again


def test_a_cache_that_cannot_be_written_only_costs_a_plan(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert nodeplan.node_plan(1, ONE, "compact", cache=str(blocked / "plans"))["parts"]


def test_a_request_that_does_not_fit_says_why(tmp_path):
    with pytest.raises(PlacementError, match="cores"):
        nodeplan.node_plan(len(os.sched_getaffinity(0)) + 1, ONE, "compact", cache=str(tmp_path))
    assert not list(tmp_path.iterdir())


def test_a_remembered_plan_loads_neither_numpy_nor_the_planner(tmp_path):
    code = (
        "import sys, collections\n"
        "from t2mpi.resources import nodeplan\n"
        "R = collections.namedtuple('R', 'cpus threads memory')(1, 1, 64 << 20)\n"
        f"nodeplan.node_plan(1, R, 'compact', cache={str(tmp_path)!r})\n"
        "print(sorted(m for m in ('numpy', 'dataclasses', 't2mpi.resources.placement', "
        "'t2mpi.resources.topology') if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run() -> str:
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert "numpy" in run()  # the first one plans
    assert run() == "[]"
