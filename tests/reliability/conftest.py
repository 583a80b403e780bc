"""Tallies of the fault-injection cases, printed at the end of the run.

Each test records, per case, how many faults it tried, how many the daemon survived (kept
working and answered correctly afterwards) and how much was lost (acknowledged cache entries,
invalidations, state files). `pytest_terminal_summary` prints one line per case:

    reliability: crash_during_flush: tried 100, survived 100, lost 0
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.reliability.harness import soak_factor


@dataclass
class Tally:
    tried: int = 0
    survived: int = 0
    lost: int = 0
    notes: dict[str, object] = field(default_factory=dict)


@dataclass
class Report:
    cases: dict[str, Tally] = field(default_factory=dict)

    def case(self, name: str) -> Tally:
        return self.cases.setdefault(name, Tally())


_REPORT = pytest.StashKey[Report]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_REPORT] = Report()


@pytest.fixture(scope="session")
def report(pytestconfig: pytest.Config) -> Iterator[Report]:
    yield pytestconfig.stash[_REPORT]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report = terminalreporter.config.stash.get(_REPORT, None)
    if report is None or not report.cases:
        return
    terminalreporter.section(f"reliability (soak factor {soak_factor()})")
    for name, t in report.cases.items():
        line = f"reliability: {name}: tried {t.tried}, survived {t.survived}, lost {t.lost}"
        if t.notes:
            line += " (" + ", ".join(f"{k} {v}" for k, v in t.notes.items()) + ")"
        terminalreporter.write_line(line)
