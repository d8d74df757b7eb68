"""Studies on a real local Ray cluster of two nodes (two `ray start` on this machine).

The second node runs in a mount namespace of its own where `private` is a tmpfs of its own:
a node that does not see the driver's files there, as a machine without the shared file
system would not. The cluster gets a home, a temp folder and ports of its own, and every
process it started is killed by process id at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from study_helpers import (
    TINY_RECIPE,
    cli_env,
    holder_pid,
    metrics_lines,
    wait_until,
    write_study,
)

from regnet_space.analysis.studydb import read_study_db
from regnet_space.core.spec import spec_from_dict
from regnet_space.study.data import DataSpec
from regnet_space.study.recipe import load_recipe
from regnet_space.study.trainer import train

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.skipif(
    shutil.which("unshare") is None or not Path("/proc").is_dir(),
    reason="needs Linux /proc and unshare(1)",
)
RAY = str(Path(sys.executable).with_name("ray"))


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _node_args(ports: list[int]) -> list[str]:
    names = ("node-manager", "object-manager", "dashboard-agent-listen", "dashboard-agent-grpc",
             "metrics-export", "runtime-env-agent")  # fmt: skip
    args = [f"--{name}-port={port}" for name, port in zip(names, ports, strict=False)]
    low = ports[6]
    return [*args, f"--min-worker-port={low}", f"--max-worker-port={low + 40}"]


def _ours(token: str, temp: Path) -> list[int]:
    """Processes of this cluster: the token in their environment or our temp folder open."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if token.encode() in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
                continue
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        if any(link.startswith(str(temp)) for link in links):
            pids.append(int(entry.name))
    return pids


class Cluster:
    """A head node and a second node; `raylet(node)` finds a node's raylet process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.token = secrets.token_hex(6)
        self.temp = Path(f"/tmp/rs{self.token}")  # short: Ray's socket paths are bounded
        self.common, self.private = root / "common", root / "private"
        for folder in (self.common, self.private, root / "home"):
            folder.mkdir()
        self.env = {**cli_env(), "HOME": str(root / "home"), "RS_TEST_CLUSTER": self.token,
                    "RAY_health_check_period_ms": "1000",
                    "RAY_health_check_failure_threshold": "3"}  # fmt: skip
        ports = _free_ports(16)
        self.port = ports[0]
        self.address = f"127.0.0.1:{self.port}"
        self.node_ports = {"head": ports[1], "second": ports[8]}
        self._start(["--head", f"--port={self.port}", *_node_args(ports[1:8])], prefix=[])
        mount = f'mount -t tmpfs -o size=8m none {self.private} && exec "$@"'
        prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c", mount, "sh"]
        self._start([f"--address={self.address}", *_node_args(ports[8:15])], prefix=prefix)
        wait_until(lambda: self._cpus() == 2, 120, "two nodes of one CPU each")

    def _start(self, args: list[str], prefix: list[str]) -> None:
        common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
        if "--head" in args:
            common += ["--include-dashboard=false", f"--temp-dir={self.temp}"]
        proc = subprocess.run([*prefix, RAY, "start", *args, *common], env=self.env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def _cpus(self) -> float:
        code = (f"import ray; ray.init(address={self.address!r}, logging_level='ERROR'); "
                "print(ray.cluster_resources().get('CPU', 0))")  # fmt: skip
        proc = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        try:
            return float(proc.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            return 0.0

    def raylet(self, node: str) -> int:
        """The raylet process of `head` or `second`."""
        flag = f"--node_manager_port={self.node_ports[node]}"
        for pid in _ours(self.token, self.temp):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"/raylet") and flag.encode() in argv:
                return pid
        raise AssertionError(f"no raylet for {node}")

    def stop(self) -> None:
        for _ in range(3):
            pids = _ours(self.token, self.temp)
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            if not pids:
                break
            time.sleep(1)
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield c
    finally:
        c.stop()


def _study(folder: Path, **overrides: Any) -> Path:
    # Long enough that the driver still runs when Ray tells it the lost node is dead (its
    # health checks miss three beats of a second): Ray then prints, into our log.
    return write_study(
        folder / "r.yaml",
        n=2,
        recipe={**TINY_RECIPE, "epochs": 24},
        executor={"kind": "ray", "cpus_per_trial": 1},
        **overrides,
    )


def _driver(cluster: Cluster, study: Path, db: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "regnet_space", "study", "run", str(study), "--db", str(db),
            "--address", cluster.address, "--json"]  # fmt: skip
    return subprocess.Popen(argv, cwd=db.parent, env=cluster.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(
                    int(entry.name)
                )
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False


def test_storage_a_node_does_not_see_is_refused_naming_it(cluster: Cluster) -> None:
    folder = cluster.root / "probe"
    folder.mkdir()
    study = _study(folder, storage=str(cluster.private / "runs"))
    db = folder / "p.db"
    driver = _driver(cluster, study, db)
    _out, err = driver.communicate(timeout=300)
    assert driver.returncode == 2, err
    assert err.count("\n") == 1, err
    line = err.strip()
    assert f"storage {cluster.private / 'runs'}: node " in line
    assert "every node sees (a shared file system)" in line
    assert not db.exists() and not (cluster.private / "runs").exists()


def test_a_lost_node_s_trial_resumes_on_the_other_node(cluster: Cluster) -> None:
    study = _study(cluster.common)
    db = cluster.common / "r.db"
    runs = cluster.common / "r.runs"
    driver = _driver(cluster, study, db)
    try:
        second = cluster.raylet("second")

        def on_second() -> tuple[Path, list[str]] | None:
            for folder in sorted(runs.glob("trial-*")):
                lines = metrics_lines(folder)
                try:
                    if len(lines) >= 2 and _descends_from(holder_pid(folder), second):
                        return folder, lines
                except (OSError, ValueError):  # the lock being written, a process gone
                    continue
            return None

        trial, before = wait_until(on_second, 300, "two epochs on the second node", driver)
        # The node is lost: its raylet and what it ran (a lost machine takes its processes).
        for pid in [second, *_descendants(second)]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        out, err = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
    # --json is one JSON document whatever Ray printed; Ray's lines went to its log.
    assert driver.returncode == 0, err
    summary = json.loads(out)
    assert (summary["done"], summary["attempts"], summary["executor"]) == (2, 3, "ray")
    log = runs / "ray.log"
    assert "marked dead" in log.read_text() and f"Ray's own output: {log}" in err
    assert "\x1b[" not in err  # no raw escapes of Ray's on our stderr either
    # The trial resumed from its last epoch on the other node, and ends as if never lost.
    after = metrics_lines(trial)
    assert after[: len(before)] == before
    assert [json.loads(line)["epoch"] for line in after] == list(range(1, 25))
    # Parallelism followed the cluster: two trials at once, then one when the node was lost.
    assert summary["slots"] == 2 and read_study_db(db).meta["slots"] == "1"
    trial_id = int(trial.name.removeprefix("trial-"))
    t = next(t for t in read_study_db(db).trials if t.id == trial_id)
    assert t.state == "done" and t.attempts == 2
    recipe = load_recipe(trial / "recipe.yaml")
    again = train(spec_from_dict(dict(t.spec)), recipe, DataSpec(name="digits"), threads=1)
    assert [(m.train_loss, m.test_error) for m in again.curve] == [
        (m["train_loss"], m["test_error"]) for m in t.curve
    ]
    assert again.error == t.error
