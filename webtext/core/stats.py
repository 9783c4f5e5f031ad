"""Per-stage counts: what came in, what went out, and why everything else was dropped."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

STATS_FILE = "_stats.json"


@dataclass
class StageStats:
    """The funnel row of one stage. `unit` says what is counted (submissions, urls, pages, documents)."""

    stage: str
    unit: str
    input: int = 0
    output: int = 0
    dropped: Counter = field(default_factory=Counter)
    outcomes: Counter = field(default_factory=Counter)  # non-dropping labels, e.g. crawl statuses
    seconds: float = 0.0
    samples: list = field(default_factory=list)  # the drop reasons with examples in OUT/<stage>/_dropped/

    def check(self) -> None:
        """Every input is either kept or dropped under a reason: nothing disappears unaccounted."""
        if self.input != self.output + sum(self.dropped.values()):
            raise AssertionError(
                f"{self.stage}: {self.input} in != {self.output} out + {sum(self.dropped.values())} dropped"
            )

    def to_dict(self) -> dict:
        return {
            "stage": self.stage,
            "unit": self.unit,
            "input": self.input,
            "output": self.output,
            "dropped": dict(sorted(self.dropped.items())),
            "outcomes": dict(sorted(self.outcomes.items())),
            "seconds": round(self.seconds, 3),
            **({"samples": sorted(self.samples)} if self.samples else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> StageStats:
        return cls(
            stage=data["stage"],
            unit=data["unit"],
            input=data["input"],
            output=data["output"],
            dropped=Counter(data.get("dropped", {})),
            outcomes=Counter(data.get("outcomes", {})),
            seconds=data.get("seconds", 0.0),
            samples=list(data.get("samples", [])),
        )

    def write(self, out: Path) -> None:
        """Store next to a stage's output (a folder gets `_stats.json`, a file `<file>.stats.json`)."""
        stats_path(out).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def stats_path(out: Path) -> Path:
    out = Path(out)
    return out / STATS_FILE if out.is_dir() else out.with_name(out.name + ".stats.json")


def read_stats(out: Path) -> StageStats:
    return StageStats.from_dict(json.loads(stats_path(out).read_text()))


def format_funnel(stages: list[StageStats]) -> str:
    """A plain-text table of the funnel, one block per stage, reasons sorted by count."""
    lines = []
    for s in stages:
        lines.append(f"{s.stage:<14}{s.input:>9} {s.unit:<12} in -> {s.output:>8} out   ({s.seconds:.1f}s)")
        for reason, n in sorted(s.dropped.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"{'':<14}{n:>9} dropped: {reason}")
        for label, n in sorted(s.outcomes.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"{'':<14}{n:>9} {label}")
    return "\n".join(lines)
