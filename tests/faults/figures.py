"""Figures of the fault suite: each scenario reports one line, the session one summary line.

``FAULTS_SCALE=full`` runs the sizes of the acceptance list; the default (``ci``) is a reduced
size that keeps ``make test`` fast. Every scenario records its figures *before* it asserts, so a
failing scenario still shows what it measured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

SCALES = ("ci", "full")
SCENARIOS = {
    1: "crash storm",
    2: "redis away",
    3: "failover errors",
    4: "poison job",
    5: "soak",
    6: "duplicates and races",
    7: "hostile values",
    8: "access",
    9: "sentinel failover",
}


def scale() -> str:
    value = os.environ.get("FAULTS_SCALE", "ci").strip().lower() or "ci"
    if value not in SCALES:
        raise ValueError(f"FAULTS_SCALE must be one of {', '.join(SCALES)}, got {value!r}")
    return value


def sized(ci: int, full: int) -> int:
    """The size of something at the current scale."""
    return full if scale() == "full" else ci


@dataclass
class Scenario:
    number: int
    figures: dict[str, object] = field(default_factory=dict)
    jobs: int = 0
    lost: int = 0
    duplicates_unexplained: int = 0
    memory_delta_bytes: int | None = None
    tests: int = 0
    failed: int = 0
    known_defects: int = 0  # tests marked as a known, reported defect (strict xfail)

    def line(self) -> str:
        parts = " ".join(f"{k}={v}" for k, v in self.figures.items())
        verdict = "ok" if self.passed else "FAILED" if self.failed else f"{self.known_defects} known defect(s)"
        return f"faults[{self.number}] {SCENARIOS[self.number]}: {parts} -> {verdict}"

    @property
    def passed(self) -> bool:
        return self.tests > 0 and self.failed == 0 and self.known_defects == 0


RESULTS: dict[int, Scenario] = {}


def scenario(number: int) -> Scenario:
    return RESULTS.setdefault(number, Scenario(number))


def report(number: int, *, jobs: int = 0, lost: int = 0, duplicates_unexplained: int = 0, **figures: object) -> None:
    """Add one test's figures to scenario ``number`` (called before the test asserts)."""
    s = scenario(number)
    s.jobs += jobs
    s.lost += lost
    s.duplicates_unexplained += duplicates_unexplained
    if "memory_delta_bytes" in figures:
        s.memory_delta_bytes = int(figures["memory_delta_bytes"])  # type: ignore[arg-type]
    s.figures.update(figures)


def summary() -> list[str]:
    lines = [RESULTS[n].line() for n in sorted(RESULTS)]
    jobs = sum(s.jobs for s in RESULTS.values())
    lost = sum(s.lost for s in RESULTS.values())
    dups = sum(s.duplicates_unexplained for s in RESULTS.values())
    memory = next((s.memory_delta_bytes for s in RESULTS.values() if s.memory_delta_bytes is not None), None)
    passed = sum(1 for s in RESULTS.values() if s.passed)
    lines.append(
        f"faults: jobs={jobs} lost={lost} duplicates_unexplained={dups} "
        f"memory_delta_bytes={'n/a' if memory is None else memory} scenarios={passed}/{len(SCENARIOS)}"
    )
    return lines
