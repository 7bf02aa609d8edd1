"""`--detectors LIST`: the detectors by name, and the ones on by default."""

from __future__ import annotations

from collections.abc import Sequence

from netmon.alerts.baseline import BaselineDetector, BaselineSettings
from netmon.alerts.detectors import Detector, ThresholdDetector
from netmon.alerts.fanout import FanoutDetector, FanoutSettings
from netmon.alerts.newpeer import NewPeerDetector, NewPeerSettings

# name -> one line for --help and the help screen
DETECTORS = {
    "threshold": "a flow above --threshold",
    "baseline": "a flow or process far above its own learned normal",
    "fanout": "many ports of one host, or many hosts on one port (scans)",
    "new-peer": "a process past its learning period using a peer it never used",
}
DEFAULT_DETECTORS = ("threshold", "baseline", "fanout")


def parse_detectors(text: str) -> tuple[str, ...]:
    """`threshold,baseline`, `all` or `none` -> names; ValueError if unknown."""
    text = text.strip()
    if text == "all":
        return tuple(DETECTORS)
    if text == "none":
        return ()
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in DETECTORS]
    if unknown or not names:
        raise ValueError(
            f"unknown detector {', '.join(unknown) or repr(text)}: "
            f"choose from {', '.join(DETECTORS)}, all or none"
        )
    return tuple(dict.fromkeys(names))


def make_detectors(
    names: Sequence[str],
    threshold_bps: float,
    baseline: BaselineSettings | None = None,
    fanout: FanoutSettings | None = None,
    new_peer: NewPeerSettings | None = None,
) -> list[Detector]:
    made: list[Detector] = []
    for name in names:
        if name == "threshold":
            made.append(ThresholdDetector(threshold_bps))
        elif name == "baseline":
            made.append(BaselineDetector(baseline))
        elif name == "fanout":
            made.append(FanoutDetector(fanout))
        elif name == "new-peer":
            made.append(NewPeerDetector(new_peer))
        else:
            raise ValueError(f"unknown detector {name!r}")
    return made
