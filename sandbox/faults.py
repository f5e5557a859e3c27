"""Deterministic fault decisions.

Every decision comes from a `random.Random` seeded with the sandbox seed and the submit's
sequence number (plus the delivery attempt for per-attempt faults), never from shared
random state, so the same seed and the same submit sequence give the same faults however
threads interleave.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from falbridge.sandbox.config import RESULT_KNOBS, SUBMIT_KNOBS, Faults


@dataclass(frozen=True)
class SubmitFaults:
    applied: tuple[str, ...]
    params: dict[str, float] = field(default_factory=dict)

    @property
    def rejection(self) -> str | None:
        for name in ("submit_5xx", "submit_429"):  # a 5xx wins when both are drawn
            if name in self.applied:
                return name
        return None


def decide_submit_faults(faults: Faults, seed: int | str, seq: int) -> SubmitFaults:
    decided = _decide_submit_knobs(faults, seed, seq)
    return SubmitFaults(decided.applied + decide_result_faults(faults, seed, seq), decided.params)


def decide_result_faults(faults: Faults, seed: int | str, seq: int) -> tuple[str, ...]:
    """`large_result`, `drop_large_callbacks` only with it (a share of large results),
    `result_error` and `unstorable_result` on their own."""
    rng = random.Random(f"{seed}:{seq}:result")
    draws = {name: rng.random() for name in RESULT_KNOBS}
    applied: tuple[str, ...] = ()
    if draws["large_result"] < faults.large_result:
        applied = ("large_result",)
        if draws["drop_large_callbacks"] < faults.drop_large_callbacks:
            applied += ("drop_large_callbacks",)
    if draws["result_error"] < faults.result_error:
        applied += ("result_error",)
    if draws["unstorable_result"] < faults.unstorable_result:
        applied += ("unstorable_result",)
    return applied


def _decide_submit_knobs(faults: Faults, seed: int | str, seq: int) -> SubmitFaults:
    rng = random.Random(f"{seed}:{seq}")
    # One draw per knob, always, so changing one probability never shifts another's draw.
    draws = {name: rng.random() for name in SUBMIT_KNOBS}
    reorder_fraction = rng.random()
    applied = tuple(name for name in SUBMIT_KNOBS if draws[name] < getattr(faults, name))
    params: dict[str, float] = {}
    if "delay" in applied:
        params["delay_s"] = faults.delay_s
    if "reorder" in applied:
        params["reorder_delay_s"] = round(reorder_fraction * faults.reorder_window_s, 6)
    if "submit_delay" in applied:
        params["submit_delay_s"] = faults.submit_delay_s
    if "duplicate" in applied:
        params["duplicate_copies"] = faults.duplicate_copies
    return SubmitFaults(applied, params)


@dataclass(frozen=True)
class AttemptFaults:
    bad_signature: bool
    stale_by_s: float  # 0.0 unless the timestamp is shifted back


def decide_attempt_faults(
    faults: Faults, seed: int | str, seq: int, kind: str, copy: int, attempt: int
) -> AttemptFaults:
    rng = random.Random(f"{seed}:{seq}:{kind}:{copy}:{attempt}")
    bad_signature = rng.random() < faults.bad_signature
    stale = rng.random() < faults.stale_timestamp
    return AttemptFaults(bad_signature, faults.stale_by_s if stale else 0.0)


def model_rng(seed: int | str, seq: int) -> random.Random:
    return random.Random(f"{seed}:{seq}:model")


def decide_storage_fault(faults: Faults, seed: int | str, call: int, knob: str) -> bool:
    """Whether storage call number `call` fails with `knob` (one stream per knob)."""
    probability: float = getattr(faults, knob)
    return random.Random(f"{seed}:storage:{knob}:{call}").random() < probability
