"""`musicd doctor` on the config file's triggers: refused for the file's permissions, and each
command found and executable or not."""

from __future__ import annotations

from pathlib import Path

from daemon.config import load_config
from daemon.mac.doctor import check_triggers


def config(tmp_path: Path, *commands: list[str], mode: int = 0o600) -> Path:
    path = tmp_path / "config.toml"
    text = "".join(
        f'[[triggers]]\nname = "t{i}"\ncommand = {command!r}\n'.replace("'", '"')
        for i, command in enumerate(commands)
    )
    path.write_text(text)
    path.chmod(mode)
    return path


def test_each_triggers_command_is_checked(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    path = config(tmp_path, ["sh", "-c", "true"], [str(script)], ["/nonexistent/cmd"])
    checks = list(check_triggers(load_config(path)))
    assert [(c.name, c.status) for c in checks] == [
        ("trigger t0", "ok"),
        ("trigger t1", "fail"),
        ("trigger t2", "fail"),
    ]
    assert "not found or not executable" in checks[2].message


def test_a_config_others_may_write_is_a_failed_check(tmp_path: Path) -> None:
    path = config(tmp_path, ["sh"], mode=0o666)
    [check] = check_triggers(load_config(path))
    assert check.status == "fail" and "writable by its group or by others" in check.message


def test_no_triggers_no_check(tmp_path: Path) -> None:
    assert list(check_triggers(load_config(config(tmp_path)))) == []
