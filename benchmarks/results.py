"""The results of a benchmark run: measured commands, comparisons and targets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmarks.timing import Sample, Stats

KIB_PER_MIB = 1024


@dataclass
class Measured:
    """One command (or server start/stop procedure) and its timed samples."""

    label: str
    command: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def seconds(self) -> Stats:
        return Stats.of([sample.seconds for sample in self.samples])

    @property
    def peak_rss_mib(self) -> Stats | None:
        values = [s.peak_rss_kib / KIB_PER_MIB for s in self.samples if s.peak_rss_kib]
        return Stats.of(values) if values else None

    @property
    def statuses(self) -> list[int]:
        return sorted({s.status for s in self.samples if s.status is not None})

    def as_dict(self) -> dict[str, Any]:
        rss = self.peak_rss_mib
        return {
            "label": self.label,
            "command": self.command,
            "runs": len(self.samples),
            "seconds": vars(self.seconds) if self.samples else None,
            "peak_rss_mib": vars(rss) if rss else None,
            "exit_statuses": self.statuses,
            "samples": [
                {"seconds": s.seconds, "peak_rss_kib": s.peak_rss_kib, "status": s.status}
                for s in self.samples
            ],
        }


@dataclass(frozen=True)
class Target:
    """A goal from the issue: ``kind`` is "ratio" (x), "diff" (seconds) or "peak" (MiB)."""

    kind: str
    limit: float
    baseline: str | None = None  # label of the baseline it compares against

    def describe(self) -> str:
        if self.kind == "ratio":
            return f"<= {self.limit:.2f}x {self.baseline}"
        if self.kind == "diff":
            return f"<= {self.baseline} + {self.limit * 1000:.0f} ms"
        return f"peak RSS <= {self.limit:.0f} MiB"


@dataclass
class Comparison:
    """A subject measured against baselines in one alternating series."""

    name: str  # scenario name, as used by --only
    title: str
    condition: str  # e.g. "5000 listeners / 200 processes (5012 on the machine)"
    subject: Measured
    baselines: list[Measured] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def baseline(self, label: str) -> Measured | None:
        return next((b for b in self.baselines if b.label == label), None)

    def ratio(self, baseline: Measured) -> float:
        return self.subject.seconds.median / baseline.seconds.median

    def difference(self, baseline: Measured) -> float:
        return self.subject.seconds.median - baseline.seconds.median

    def evaluate(self, target: Target) -> tuple[float | None, bool | None]:
        """The measured value for ``target`` and whether it is met (None: not measured)."""
        if target.kind == "peak":
            rss = self.subject.peak_rss_mib
            return (rss.max, rss.max <= target.limit) if rss else (None, None)
        baseline = self.baseline(target.baseline or "")
        if baseline is None or not baseline.samples or not self.subject.samples:
            return None, None
        value = self.ratio(baseline) if target.kind == "ratio" else self.difference(baseline)
        return value, value <= target.limit

    def as_dict(self) -> dict[str, Any]:
        targets = []
        for target in self.targets:
            value, met = self.evaluate(target)
            targets.append(
                {
                    "kind": target.kind,
                    "limit": target.limit,
                    "baseline": target.baseline,
                    "description": target.describe(),
                    "value": value,
                    "met": met,
                }
            )
        return {
            "name": self.name,
            "title": self.title,
            "condition": self.condition,
            "started_at": self.started_at,
            "subject": self.subject.as_dict(),
            "baselines": [
                {
                    **b.as_dict(),
                    "median_ratio": self.ratio(b) if b.samples else None,
                    "median_difference_seconds": self.difference(b) if b.samples else None,
                }
                for b in self.baselines
            ],
            "targets": targets,
            "skipped": self.skipped,
            "notes": self.notes,
            **self.extra,
        }
