"""The CLI surface: every option of every command has help text, no docstring markup in --help,
the shared --no-progress switch, and numeric options that are validated."""

from __future__ import annotations

import argparse
import re

import pytest

from darkshower.cli.main import build_parser, main, plain_text

RST = re.compile(r"``|:(func|class|mod|meth|attr|data|ref):`|\S::\s*$", re.M)


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


def test_every_command_is_walked():
    _, cmds = _subparsers()
    # the commands of this build, at least the core ones
    assert {"generate", "import", "info", "observables", "train", "score", "evaluate", "search", "report",
            "distill", "benchmark", "demo"} <= set(cmds)


@pytest.mark.parametrize("name", sorted(_subparsers()[1]))
def test_every_option_has_help_and_no_rst(name):
    _, cmds = _subparsers()
    p = cmds[name]
    missing = [a.option_strings or [a.dest] for a in p._actions
               if not isinstance(a, argparse._HelpAction) and not (a.help and a.help.strip())]
    assert not missing, f"darkshower {name}: options without help text: {missing}"
    text = p.format_help()
    bad = [m.group(0) for m in RST.finditer(text)]
    assert not bad, f"darkshower {name} --help shows reStructuredText markup {bad}:\n{text}"
    assert "--no-progress" in text, f"darkshower {name} has no --no-progress"


def test_plain_text_removes_markup():
    assert plain_text("see :func:`darkshower.train.score` and ``make demo``. Example::\n\n  x") == \
        "see darkshower.train.score and make demo. Example:\n\n  x"


def test_jobs_means_worker_processes_everywhere():
    _, cmds = _subparsers()
    for name, p in cmds.items():
        act = p._option_string_actions.get("--jobs")
        if act is not None:
            assert "worker processes" in act.help, (name, act.help)
            assert act.type is not int, f"darkshower {name} --jobs is not validated"


def test_every_numeric_option_is_validated():
    _, cmds = _subparsers()
    bare = [(name, a.option_strings) for name, p in cmds.items() for a in p._actions if a.type in (int, float)]
    assert not bare, f"numeric options parsed without a check: {bare}"


@pytest.mark.parametrize("argv, needle", [
    (["score", "RUN", "DS", "--out", "s.parquet", "--batch-size", "-1"], "--batch-size"),
    (["score", "RUN", "DS", "--out", "s.parquet", "--batch-size", "0"], "--batch-size"),
    (["score", "RUN", "DS", "--out", "s.parquet", "--threads", "0"], "--threads"),
    (["score", "RUN", "DS", "--out", "s.parquet", "--jobs", "-2"], "--jobs"),
    (["score", "RUN", "DS", "--out", "s.parquet", "--batch-size", "many"], "--batch-size"),
    (["train", "ae-hlf", "--data", "DS", "--out", "R", "--epochs", "0"], "--epochs"),
    (["train", "ae-hlf", "--data", "DS", "--out", "R", "--seed", "-3"], "--seed"),
    (["distill", "T", "--data", "DS", "--out", "R", "--threads", "-1"], "--threads"),
    (["observables", "DS", "--out", "t.parquet", "--r0", "0"], "--r0"),
    (["observables", "DS", "--out", "t.parquet", "--zcut", "nan"], "--zcut"),
    (["export", "RUN", "--out", "m.onnx", "--opset", "0"], "--opset"),
    (["demo", "--events", "-5"], "--events"),
    (["benchmark", "c.yaml", "--jobs", "-1"], "--jobs"),
    (["generate", "qcd", "--out", "d", "--events", "-10"], "--events"),
    (["generate", "qcd", "--out", "d", "--events", "0"], "--events"),
    (["evaluate", "--scores", "s", "--background", "b", "--signal", "s", "--out", "o", "--min-bkg", "inf"],
     "--min-bkg"),
    (["search", "--scores", "s", "--background", "b", "--signal", "s", "--out", "o", "--lumi", "-1"], "--lumi"),
])
def test_bad_numbers_exit_2_before_any_work(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {needle}" in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_zcut_out_of_range_is_a_clear_error(capsys, tmp_path, qcd_ds):
    assert main(["observables", str(qcd_ds.path), "--out", str(tmp_path / "t.parquet"), "--zcut", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "zcut" in err and "1.5" in err and "[0, 1)" in err, err
    assert not (tmp_path / "t.parquet").exists()


def test_no_progress_switches_progress_off_globally(monkeypatch, tmp_path, qcd_ds, capsys):
    from darkshower import progress as prog

    monkeypatch.setattr(prog, "_switch", None)
    monkeypatch.setenv("DARKSHOWER_PROGRESS_INTERVAL", "1e-9")  # a line per update if progress were on
    seen = []
    real = prog.progress
    monkeypatch.setattr(prog, "progress", lambda *a, **k: seen.append(prog.is_enabled()) or real(*a, **k))
    assert main(["observables", str(qcd_ds.path), "--out", str(tmp_path / "t.parquet"), "--no-progress"]) == 0
    assert seen == [False]  # off for the whole command
    assert "[observables]" not in capsys.readouterr().err
    assert prog.is_enabled()  # and back on after it
    assert main(["observables", str(qcd_ds.path), "--out", str(tmp_path / "t2.parquet")]) == 0
    assert "[observables]" in capsys.readouterr().err


def test_efficiency_lists_one_parser():
    from darkshower.cli.options import efficiencies, number_list
    from darkshower.errors import ConfigError

    assert efficiencies("0.1, 0.3,0.5", "--eff-s") == (0.1, 0.3, 0.5)
    assert efficiencies("1", "--eff-s") == (1.0,)
    with pytest.raises(ConfigError, match=r"--cut-eff '1': efficiencies must lie in \(0, 1\)"):
        efficiencies("1", "--cut-eff", include_one=False)
    with pytest.raises(ConfigError, match=r"--eff-b '0.1,x': expected comma-separated numbers"):
        efficiencies("0.1,x", "--eff-b")
    with pytest.raises(ConfigError, match="--eff-s"):
        efficiencies("", "--eff-s")
    assert efficiencies("", "--cut-eff", allow_empty=True) == ()
    assert number_list("2,-1", "--x") == (2.0, -1.0)  # range left to the caller
    from darkshower.cli import evaluate, search

    with pytest.raises(ConfigError, match=r"--cut-eff '0.5,x': expected comma-separated numbers"):
        search._floats("0.5,x")
    with pytest.raises(ConfigError, match="--eff-s 'a'"):
        evaluate._floats("--eff-s", "a")


def test_demo_shows_the_default_next_to_the_baseline():
    """`make demo` trains the recommended default (auto) and the gmm density baseline it must beat; the CLI's
    --methods default is the library's DEMO_METHODS, and the demo benchmark config lists exactly those."""
    from darkshower.pipeline.demo import DEMO_METHODS, demo_config

    assert {"auto", "gmm"} <= set(DEMO_METHODS)
    args = build_parser().parse_args(["demo"])
    assert tuple(args.methods.split(",")) == DEMO_METHODS
    assert [m["method"] for m in demo_config()["methods"]] == list(DEMO_METHODS)


def test_info_on_a_missing_path_names_runs_and_datasets(capsys, tmp_path):
    assert main(["info", str(tmp_path / "nope")]) == 2
    assert "no such run or dataset directory" in capsys.readouterr().err
