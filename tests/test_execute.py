"""The executors: results, error and cancel paths, dead workers, and workers that never outlive
their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from darkshower.errors import DarkshowerError, WorkerError
from darkshower.execute import InProcessExecutor, ProcessPool, make_executor


def square(x):
    return x * x


def fail_on_three(x):
    if x == 3:
        raise DarkshowerError(f"item {x} is bad")
    time.sleep(0.05)
    return x


def slow_touch(arg):
    """Sleep, then leave a file: files that appear after the pool stopped prove it did not stop."""
    directory, i = arg
    time.sleep(0.3)
    Path(directory, f"done-{i}").write_text(str(os.getpid()))
    return i


def die(x):
    if x == 1:
        os._exit(3)
    time.sleep(0.2)
    return x


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                pass
    return out


def test_make_executor():
    assert isinstance(make_executor(1), InProcessExecutor)
    assert isinstance(make_executor(3), ProcessPool) and make_executor(3).workers == 3


@pytest.mark.parametrize("ex", [InProcessExecutor(), ProcessPool(2)], ids=["inprocess", "pool"])
def test_all_results_delivered(ex):
    got = []
    ex.run(square, range(7), got.append)
    assert sorted(got) == [x * x for x in range(7)]


def test_worker_error_propagates_and_stops_the_rest(tmp_path):
    got = []
    t0 = time.monotonic()
    with pytest.raises(DarkshowerError, match="item 3 is bad"):
        ProcessPool(2).run(fail_on_three, range(3, 200), got.append)
    assert time.monotonic() - t0 < 5  # the 196 queued items (~0.05 s each on 2 workers) were cancelled
    assert len(got) < 50


def test_on_result_error_cancels_queued_and_running(tmp_path):
    def boom(_):
        raise KeyboardInterrupt  # as Ctrl-C in the parent

    with pytest.raises(KeyboardInterrupt):
        ProcessPool(2).run(slow_touch, [(tmp_path, i) for i in range(20)], boom)
    time.sleep(0.8)  # long enough for still-running workers to finish a task
    # the first task completed, the worker running the other one was terminated, nothing else ran
    assert len(list(tmp_path.glob("done-*"))) <= 2


def test_dead_worker_is_a_clear_error():
    with pytest.raises(WorkerError, match=r"worker process died without an error.*fewer --jobs"):
        ProcessPool(2).run(die, range(4), lambda r: None)


def test_empty_items():
    ProcessPool(2).run(square, [], lambda r: pytest.fail("no items"))


PARENT = textwrap.dedent("""
    import sys, time
    from darkshower.execute import ProcessPool
    def nap(x):
        time.sleep(60)
    if __name__ == "__main__":
        ProcessPool(2).run(nap, range(4), print)
""")


def _wait_for_children(pid, n, timeout=30):
    t0 = time.time()
    while time.time() - t0 < timeout:
        kids = [k for k in _children(pid) if _alive(k)]
        if len(kids) >= n:
            return kids
        time.sleep(0.1)
    pytest.fail(f"process {pid} did not start {n} workers within {timeout} s")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("variant", ["prctl", "watchdog-only", "spawn"])
def test_workers_exit_when_parent_is_killed(tmp_path, variant):
    script = tmp_path / "parent.py"
    src = PARENT
    if variant == "watchdog-only":  # the watchdog thread alone must do it too (non-Linux platforms)
        src = src.replace("from darkshower.execute import ProcessPool",
                          "import darkshower.execute as E\nE._set_parent_death_signal = lambda: False\n"
                          "from darkshower.execute import ProcessPool")
    elif variant == "spawn":  # ProcessPool spawns (not forks) workers when torch is loaded, as in score
        src = src.replace("import sys, time", "import sys, time\nsys.modules.setdefault('torch', None)")
    script.write_text(src)
    proc = subprocess.Popen([sys.executable, str(script)])
    try:
        workers = _wait_for_children(proc.pid, 3 if variant == "spawn" else 2)  # spawn: + resource tracker
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        t0 = time.time()
        while time.time() - t0 < 5 and any(_alive(w) for w in workers):
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "workers outlived their killed parent"
    finally:
        for w in _children(proc.pid):
            os.kill(w, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_generate_workers_exit_when_parent_is_killed(tmp_path):
    out = tmp_path / "d"
    cmd = [sys.executable, "-m", "darkshower.cli.main", "generate", "qcd", "--events", "400", "--chunk-size", "25",
           "--seed", "3", "--jobs", "2", "--out", str(out), "--set", "pthat_min=300", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        workers = _wait_for_children(proc.pid, 2, timeout=60)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        t0 = time.time()
        while time.time() - t0 < 5 and any(_alive(w) for w in workers):
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "generate workers outlived their killed parent"
    finally:
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
