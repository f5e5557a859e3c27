"""What a chaos run sets: the sandbox's faults and delivery retries, and the clocks of the
reconciler and the broker (production's minutes turned down to seconds)."""

from __future__ import annotations

from dataclasses import dataclass

FAKE_FAL_KEY = "chaos-key-id:chaos-key-secret"

# The fault mix. delay/reorder/webhook_before_response/duplicate_copies are our
# choice: a few seconds of delay so callbacks really overtake each other and polls.
FAULTS = {
    "drop": 0.10,
    "duplicate": 0.30,
    "duplicate_copies": 2,
    "delay": 0.10,
    "delay_s": 3.0,
    "reorder": 0.10,
    "reorder_window_s": 3.0,
    "webhook_before_response": 0.05,
    "submit_5xx": 0.05,  # 503: fal's gateway never handed it on, so retryable
    "submit_429": 0.05,
    "retry_after_s": 0.5,
    "submit_response_lost": 0.02,
    "payload_error": 0.05,
    "error": 0.05,
    # fal's retention window (issue 15): a tenth of the results are 10 KB or more, kept
    # six minutes (scaled, Timings.retention_scale), and half of those lose their callback:
    # only the sweeper's poll can fetch them in time.
    "large_result": 0.10,
    "drop_large_callbacks": 0.50,
}
# fal retries deliveries for a long time; scaled down so a receiver outage costs seconds.
SANDBOX_RUNTIME = {
    "delivery_backoff_s": [0.5, 1, 2, 4, 8, 15],
    "delivery_attempts": 7,
    "delivery_timeout_s": 5.0,
}


# Outgoing webhooks to the faulty subscriber (bench/chaos_subscriber.py). The schedule is
# Svix's ~27.6 h scaled to ~3.3 min: attempts at 0, 0.01, 0.6, 4.2, 18.6, 54.6, 127 and
# 199 s (each wait +-20 %). The per-attempt timeout is shorter than the subscriber's slow
# answers, so those time out. The outage is shorter than the first four attempts' span
# even with jitter (>= 3.4 s), so it costs a delivery at most three of its eight attempts:
# the five left all fail with odds of 0.15^5 (8e-5) at the subscriber's fault mix.
NOTIFY_SCHEDULE_SCALE = 0.002
NOTIFY_TIMEOUT_S = 2.0
SUBSCRIBER_SLOW_S = 3.0
SUBSCRIBER_AWAY_S = 3.0


def notify_env(schedule_scale: float = NOTIFY_SCHEDULE_SCALE) -> dict[str, str]:
    return {
        "FALBRIDGE_NOTIFY_ALLOWED_NETWORKS": "127.0.0.0/8",  # the subscriber is on loopback
        "FALBRIDGE_NOTIFY_SCHEDULE_SCALE": str(schedule_scale),
        "FALBRIDGE_NOTIFY_TIMEOUT_S": str(NOTIFY_TIMEOUT_S),
    }


@dataclass(frozen=True)
class Timings:
    """The reconciler's and the broker's clocks, turned down from production's minutes."""

    reconcile_interval_s: float = 2.0
    pending_grace_s: float = 15.0  # longer than a healthy queue wait: no redundant submits
    # Production's 30 s, not less: it is also how long the sweeper leaves a dispatched
    # outgoing delivery to its task, and with a backlog longer than that (this machine,
    # shared, with three deliver tasks per job) each sweep re-enqueued every waiting
    # delivery again: 8,120 deliver_event tasks for 1,212 deliveries, up to 22 copies.
    delivery_grace_s: float = 30.0
    # Production's 600 s would leave a store task lost with a killed worker to a sweep
    # after the run has stopped waiting; 30 s for the same reason as delivery_grace_s.
    store_grace_s: float = 30.0
    silent_after_s: float = 15.0  # past delay + reorder, so most polls find a real drop
    poll_every_s: float = 10.0
    outcome_unknown_grace_s: float = 15.0  # time for the lost submit's own callback
    submit_lease_s: float = 10.0  # a sandbox submit answers in milliseconds
    visibility_timeout_s: int = 30
    # The sandbox's retention_scale: fal's six minutes shrink by the factor production's
    # fetch path (docs/reliability.md, "fal's retention window") shrank to these timings:
    # silent_after 60 -> 15 s, poll_every 60 -> 10 s, interval 30 -> 2 s, each at least 4x.
    retention_scale: float = 0.25

    @classmethod
    def fast(cls) -> Timings:
        """For the few-hundred-job run inside `make test`."""
        return cls(
            reconcile_interval_s=1.0,
            pending_grace_s=6.0,
            delivery_grace_s=4.0,
            store_grace_s=4.0,
            silent_after_s=6.0,
            poll_every_s=4.0,
            outcome_unknown_grace_s=6.0,
            submit_lease_s=5.0,
            visibility_timeout_s=15,
            # The timings shrank at least 10x (silent_after 60 -> 6 s, poll_every 60 -> 4 s,
            # interval 30 -> 1 s), the window only 5x (72 s): the suite also runs on loaded
            # machines, where one poll waited past a 36 s window (CI check at load 10).
            # `make chaos` keeps the window scaled as its timings are.
            retention_scale=0.2,
        )

    def env(self) -> dict[str, str]:
        return {
            "FALBRIDGE_RECONCILE_INTERVAL_S": str(self.reconcile_interval_s),
            "FALBRIDGE_PENDING_GRACE_S": str(self.pending_grace_s),
            "FALBRIDGE_DELIVERY_GRACE_S": str(self.delivery_grace_s),
            "FALBRIDGE_STORE_GRACE_S": str(self.store_grace_s),
            "FALBRIDGE_SILENT_AFTER_S": str(self.silent_after_s),
            "FALBRIDGE_POLL_EVERY_S": str(self.poll_every_s),
            "FALBRIDGE_OUTCOME_UNKNOWN_GRACE_S": str(self.outcome_unknown_grace_s),
            "FALBRIDGE_OUTCOME_UNKNOWN_POLICY": "resubmit",
            "FALBRIDGE_SUBMIT_LEASE_S": str(self.submit_lease_s),
            "FALBRIDGE_VISIBILITY_TIMEOUT_S": str(self.visibility_timeout_s),
        }
