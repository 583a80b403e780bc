"""launchctl's own answers, which the fake launchctl of tests/mac/test_launchd.py imitates.

Read-only: these ask about a label nobody installs and load nothing.
"""

from __future__ import annotations

import uuid

import pytest

from daemon.mac.launchctl import SERVICE_NOT_FOUND, Launchctl

pytestmark = pytest.mark.macos


def unknown_label() -> str:
    return f"org.musicd.test.absent-{uuid.uuid4().hex}"


def test_the_real_launchctl_answers_an_unknown_service_as_status_expects() -> None:
    # 113 "Could not find service"; a session without a GUI domain says "could not find" too.
    launchctl = Launchctl.find()
    proc = launchctl.run("print", launchctl.target(unknown_label()))
    said = (proc.stdout + proc.stderr).lower()
    assert proc.returncode == SERVICE_NOT_FOUND or (
        proc.returncode != 0 and "could not find" in said
    ), (proc.returncode, said)


def test_an_unknown_agent_reads_as_not_loaded() -> None:
    assert Launchctl.find().status(unknown_label()).loaded is False
