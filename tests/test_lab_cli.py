"""`archlab lab` on the command line: its options, the loopback default, and one-line errors for
what a user can get wrong before any server starts (a missing or foreign directory, a taken
port). The server itself is exercised in tests/test_lab_browser.py."""

from __future__ import annotations

import socket

import pytest

from archlab.cli import build_parser, main


def test_lab_is_a_command_that_binds_to_loopback_by_default(capsys):
    args = build_parser().parse_args(["lab"])
    assert (args.host, args.port, args.run_dirs) == ("127.0.0.1", 7860, [])
    with pytest.raises(SystemExit) as e:
        main(["lab", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for option in ("RUN_DIR", "--port", "--host", "--study", "--models-dir", "--train-seconds"):
        assert option in out


@pytest.mark.parametrize("what", ["missing", "empty"])
def test_a_bad_run_directory_is_one_line(capsys, tmp_path, what):
    d = tmp_path / "run"
    if what == "empty":
        d.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    assert main(["lab", str(d), "--port", str(free)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("archlab lab: error:") and "\n" not in err and str(d) in err


def test_a_taken_port_is_one_line(capsys, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["lab", str(tmp_path), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err and "\n" not in err
    assert main(["lab", "--port", "70000"]) == 2
    assert "1..65535" in capsys.readouterr().err
