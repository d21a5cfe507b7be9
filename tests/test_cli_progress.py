"""darkshower.progress: one progress mechanism (bar on a terminal, rate-limited lines elsewhere, off)."""

from __future__ import annotations

import io

import pytest

from darkshower import progress as prog
from darkshower.errors import ConfigError


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(prog, "_now", c)
    monkeypatch.setattr(prog, "_switch", None)
    monkeypatch.delenv("DARKSHOWER_NO_PROGRESS", raising=False)
    monkeypatch.delenv("DARKSHOWER_PROGRESS_INTERVAL", raising=False)
    return c


def test_not_a_terminal_prints_rate_limited_lines(clock):
    out = io.StringIO()
    with prog.progress(100, "score ae", "chunk", stream=out) as bar:
        for _ in range(35):  # one unit per second for 35 s
            clock.t += 1
            bar.update(1)
            bar.set_postfix(loss=0.125)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 4, lines  # at 10, 20, 30 s and the last one
    assert lines[0] == "[score ae] 10/100 chunk (10%), 1 chunk/s, ETA 0:01:30, loss=0.125"
    assert lines[2].startswith("[score ae] 30/100 chunk (30%)")
    assert lines[3].startswith("[score ae] 35/100 chunk (35%), 1 chunk/s, done in 0:00:35")


def test_many_fast_updates_print_one_line_per_interval(clock):
    out = io.StringIO()
    bar = prog.progress(None, "import pfnano", "ev", stream=out)
    for _ in range(10_000):  # 10000 updates in 25 s
        clock.t += 0.0025
        bar.update(3)
    bar.close()
    bar.close()  # idempotent
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # 10 s, 20 s, final
    assert lines[0].startswith("[import pfnano] 12000 ev, 1.2e+03 ev/s")
    assert "ETA" not in lines[0]  # unknown total


def test_short_task_prints_nothing(clock):
    out = io.StringIO()
    with prog.progress(5, "quick", stream=out) as bar:
        for _ in range(5):
            clock.t += 1
            bar.update()
    assert out.getvalue() == ""


def test_interval_from_environment(clock, monkeypatch):
    monkeypatch.setenv("DARKSHOWER_PROGRESS_INTERVAL", "2")
    out = io.StringIO()
    with prog.progress(10, "x", stream=out) as bar:
        for _ in range(10):
            clock.t += 1
            bar.update()
    assert len(out.getvalue().splitlines()) == 6  # 2, 4, 6, 8, 10 s and the final line
    for bad in ("-1", "soon", "inf"):
        monkeypatch.setenv("DARKSHOWER_PROGRESS_INTERVAL", bad)
        with pytest.raises(ConfigError, match=f"DARKSHOWER_PROGRESS_INTERVAL='{bad}'"):
            prog.interval(strict=True)
        # the library never stops a computation for it: warning, default interval
        assert prog.progress(10, "x", stream=io.StringIO())._every == prog.DEFAULT_INTERVAL


def test_cli_rejects_a_bad_interval_before_any_work(monkeypatch, tmp_path, capsys):
    from darkshower.cli.main import main

    monkeypatch.setenv("DARKSHOWER_PROGRESS_INTERVAL", "0")
    out = tmp_path / "t.parquet"
    assert main(["observables", str(tmp_path / "missing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "DARKSHOWER_PROGRESS_INTERVAL='0'" in err and "missing" not in err  # checked first
    assert not out.exists()


@pytest.mark.parametrize("how", ["enabled=False", "env", "set_enabled"])
def test_disabled_prints_nothing(clock, monkeypatch, how):
    enabled = None
    if how == "enabled=False":
        enabled = False
    elif how == "env":
        monkeypatch.setenv("DARKSHOWER_NO_PROGRESS", "1")
        enabled = True  # the global switch wins
    else:
        prog.set_enabled(False)
    for stream in (io.StringIO(), Tty()):
        with prog.progress(100, "off", stream=stream, enabled=enabled) as bar:
            for _ in range(50):
                clock.t += 1
                bar.update()
                bar.set_postfix(a=1)
        assert stream.getvalue() == ""


def test_terminal_gets_a_tqdm_bar(clock):
    out = Tty()
    with prog.progress(4, "train ae", "jet", stream=out) as bar:
        bar.update(2)
        bar.set_postfix(loss=0.5)
        bar.update(2)
    text = out.getvalue()
    assert "\r" in text and "train ae" in text and "4/4" in text


def test_iterate_counts_items_and_stops_early(clock, capsys):
    out = io.StringIO()
    got = []
    for i in prog.iterate(range(30), "representation qcd", "chunk"):
        clock.t += 1
        got.append(i)
        if i == 24:
            break
    assert got == list(range(25))
    err = capsys.readouterr().err.splitlines()  # default stream: stderr (not a terminal under pytest)
    assert err[0].startswith("[representation qcd] 10/30 chunk")
    assert err[-1].startswith("[representation qcd] 24/30 chunk") and "done in" in err[-1]  # closed at the break
    with prog.progress(30, "r", "chunk", stream=out) as bar:
        for _ in prog.iterate(range(30), "inner", enabled=False):
            clock.t += 1
            bar.update()
    assert len(out.getvalue().splitlines()) == 4
