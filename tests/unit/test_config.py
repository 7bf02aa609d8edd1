from __future__ import annotations

import pytest

from netmon import __version__
from netmon.config import Config, build_parser, parse_args


def test_defaults() -> None:
    c = parse_args([])
    assert c == Config()
    assert c.interval_s == 1.0
    assert c.alpha == 0.4
    assert c.threshold_bps == 10485760.0
    assert c.count is None
    assert c.probes == "auto"
    assert c.max_flows == 10240
    assert c.speed == 1.0
    assert not (c.json or c.show_kernel or c.print_bpf)
    assert c.record is None and c.replay is None and c.log_file is None


def test_all_options() -> None:
    c = parse_args(
        [
            "--interval", "250", "--alpha", "1", "--threshold", "512K", "--json",
            "--count", "3", "--probes", "syscalls", "--show-kernel", "--max-flows", "64",
            "--log-file", "/tmp/x.log",
        ]
    )  # fmt: skip
    assert c.interval_s == pytest.approx(0.25)
    assert c.alpha == 1.0
    assert c.threshold_bps == 512 * 1024
    assert (c.json, c.count, c.probes, c.show_kernel, c.max_flows) == (
        True, 3, "syscalls", True, 64,
    )  # fmt: skip
    assert c.log_file == "/tmp/x.log"


def test_short_options() -> None:
    c = parse_args(["-i", "500", "-a", "0.5", "-t", "1M", "-j", "--count", "2", "-k"])
    assert (c.interval_s, c.alpha, c.threshold_bps, c.json, c.count, c.show_kernel) == (
        0.5, 0.5, 1048576.0, True, 2, True,
    )  # fmt: skip


def test_replay_options() -> None:
    c = parse_args(["--replay", "rec.jsonl", "--speed", "2.5"])
    assert (c.replay, c.speed) == ("rec.jsonl", 2.5)
    assert parse_args(["--replay", "r", "--json", "--count", "1"]).json


def test_record_option() -> None:
    assert parse_args(["--record", "out.jsonl"]).record == "out.jsonl"


def test_fractional_interval() -> None:
    assert parse_args(["--interval", "125.5"]).interval_s == pytest.approx(0.1255)


@pytest.mark.parametrize(("text", "seconds"), [("100", 0.1), ("3600000", 3600.0), ("1e3", 1.0)])
def test_interval_bounds_are_inclusive(text: str, seconds: float) -> None:
    assert parse_args(["--interval", text]).interval_s == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["99.9", "1", "3600001", "1e16", "1e400", "inf", "-inf"])
def test_interval_outside_100ms_to_1h_is_refused(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(["--interval", text])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--interval" in err


@pytest.mark.parametrize("text", ["0.0009", "1e-300", "1000001", "1e308"])
def test_speed_outside_its_bounds_is_refused(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(["--replay", "r", "--speed", text])
    assert exc.value.code == 2
    assert "--speed" in capsys.readouterr().err


def test_append_and_follow() -> None:
    c = parse_args(["--record", "out.jsonl", "--append"])
    assert (c.record, c.append) == ("out.jsonl", True)
    c = parse_args(["--replay", "in.jsonl", "--follow"])
    assert (c.replay, c.follow) == ("in.jsonl", True)
    assert not parse_args(["--record", "out.jsonl"]).append
    assert not parse_args(["--replay", "in.jsonl"]).follow


@pytest.mark.parametrize(
    ("argv", "needs"),
    [(["--append"], "--record"), (["--follow"], "--replay"),
     (["--replay", "r", "--append"], "--record"), (["--record", "r", "--follow"], "--replay")],
)  # fmt: skip
def test_append_needs_record_and_follow_needs_replay(
    argv: list[str], needs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert needs in capsys.readouterr().err


@pytest.mark.parametrize("text", ["10M", "10MB/s", "10485760", "10 MiB/s", "10m", "10485760B/s"])
def test_threshold_forms(text: str) -> None:
    assert parse_args(["--threshold", text]).threshold_bps == 10485760.0


def test_zero_threshold_is_allowed() -> None:
    assert parse_args(["--threshold", "0"]).threshold_bps == 0.0


def test_print_bpf_is_hidden_from_help() -> None:
    text = build_parser().format_help()
    assert "--print-bpf" not in text
    assert parse_args(["--print-bpf"]).print_bpf


@pytest.mark.parametrize(
    "option",
    [
        "--interval", "--alpha", "--threshold", "--count", "--json", "--probes",
        "--show-kernel", "--max-flows", "--record", "--replay", "--speed", "--version",
        "--log-file", "--append", "--follow",
    ],
)  # fmt: skip
def test_every_option_is_documented(option: str) -> None:
    help_text = build_parser().format_help()
    assert option in help_text
    action = next(a for a in build_parser()._actions if option in a.option_strings)
    assert action.help and len(action.help) > 15


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"netmon {__version__}"


def test_config_is_frozen() -> None:
    c = parse_args([])
    with pytest.raises(AttributeError):
        c.alpha = 0.9  # type: ignore[misc]


# -- service options ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("9479", "127.0.0.1", 9479),
        ("0", "127.0.0.1", 0),
        ("0.0.0.0:9479", "0.0.0.0", 9479),
        ("localhost:80", "localhost", 80),
        ("[::1]:9479", "::1", 9479),
        ("[::]:65535", "::", 65535),
    ],
)
def test_serve_address(text: str, host: str, port: int) -> None:
    c = parse_args(["--serve", text])
    assert c.serve is not None
    assert (c.serve.host, c.serve.port) == (host, port)
    assert c.user == "nobody"  # service mode drops to nobody by default
    assert c.metrics_processes == 50


@pytest.mark.parametrize("text", ["", "x", "65536", "-1", "::1:9479", "[::1]9479", ":9479", "1:٣"])
def test_bad_serve_address(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(["--serve", text])
    assert exc.value.code == 2
    assert "--serve" in capsys.readouterr().err


def test_service_options() -> None:
    c = parse_args(
        [
            "--serve", "9479", "--json", "--user", "daemon", "--metrics-processes", "7",
            "--alerts", "a.jsonl", "--alerts", "syslog", "--alert-exec", "/bin/true",
            "--alert-exec-timeout", "2.5",
        ]
    )  # fmt: skip
    assert (c.user, c.metrics_processes, c.alerts) == ("daemon", 7, ("a.jsonl", "syslog"))
    assert (c.alert_exec, c.alert_exec_timeout_s, c.json) == ("/bin/true", 2.5, True)
    assert parse_args([]).user is None  # the table and --json stay as started by default
    assert parse_args(["--json", "--user", "nobody"]).user == "nobody"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--serve", "1", "--replay", "r"], "--serve cannot be combined with --replay"),
        (["--serve", "1", "--record", "r"], "--record applies to the table"),
        (["--metrics-processes", "3"], "--metrics-processes only applies to --serve"),
        (["--replay", "r", "--user", "nobody"], "--user only applies to live capture"),
        (["--alert-exec-timeout", "3"], "--alert-exec-timeout only applies to --alert-exec"),
        (["--alert-exec", "/bin/true", "--alert-exec-timeout", "0"], "more than 0"),
        (["--serve", "1", "--metrics-processes", "0"], "must be > 0"),
    ],
)
def test_service_option_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
