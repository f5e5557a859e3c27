import pytest

from falbridge.models.states import ALL_STATUSES, TERMINAL, JobStatus, can_transition, states_before

S = JobStatus


@pytest.mark.parametrize(
    "current,new,allowed",
    [
        (S.PENDING, S.SUBMITTED, True),
        (S.PENDING, S.COMPLETED, True),  # callback beat the submit response
        (S.PENDING, S.OUTCOME_UNKNOWN, True),
        (S.OUTCOME_UNKNOWN, S.SUBMITTED, True),  # reconciler found it
        (S.OUTCOME_UNKNOWN, S.FAILED, True),
        (S.SUBMITTED, S.IN_PROGRESS, True),
        (S.IN_PROGRESS, S.COMPLETED, True),
        (S.SUBMITTED, S.SUBMITTED, False),  # repeat
        (S.IN_PROGRESS, S.SUBMITTED, False),  # out of order
        (S.SUBMITTED, S.OUTCOME_UNKNOWN, False),
        (S.COMPLETED, S.IN_PROGRESS, False),  # late poll after the webhook
        (S.COMPLETED, S.FAILED, False),
        (S.FAILED, S.COMPLETED, False),
        (S.CANCELLED, S.COMPLETED, False),
    ],
)
def test_transitions(current, new, allowed):
    assert can_transition(current, new) is allowed


def test_terminal_states_are_never_left():
    for terminal in TERMINAL:
        assert not any(can_transition(terminal, s) for s in JobStatus)


def test_states_before_lists_lower_ranks():
    assert set(states_before(S.IN_PROGRESS)) == {"pending", "outcome_unknown", "submitted"}
    assert "completed" not in states_before(S.FAILED)


def test_which_states_are_terminal():
    """Asserted on each state directly: a worker reads `job.job_status.is_terminal` to decide
    whether fal still has work to do for a job."""
    assert [s for s in JobStatus if s.is_terminal is True] == [S.COMPLETED, S.FAILED, S.CANCELLED]
    assert [s for s in JobStatus if s.is_terminal is False] == [
        S.PENDING,
        S.OUTCOME_UNKNOWN,
        S.SUBMITTED,
        S.IN_PROGRESS,
    ]
    assert {S.COMPLETED, S.FAILED, S.CANCELLED} == TERMINAL


def test_ranks_order_the_states_along_the_diagram():
    ranks = [s.rank for s in JobStatus]
    assert ranks == sorted(ranks)  # declared in the order a job moves through them
    assert len(set(ranks)) == 5 and S.COMPLETED.rank == S.FAILED.rank == S.CANCELLED.rank


def test_transitions_accept_the_values_as_stored():
    """The database holds the values: a row's status goes in as a plain string."""
    assert can_transition("submitted", "completed") and not can_transition("completed", "submitted")
    assert states_before("submitted") == ("pending", "outcome_unknown")


def test_states_before_each_state():
    assert states_before(S.PENDING) == ()
    assert states_before(S.OUTCOME_UNKNOWN) == ("pending",)
    assert states_before(S.SUBMITTED) == ("pending", "outcome_unknown")
    assert states_before(S.IN_PROGRESS) == ("pending", "outcome_unknown", "submitted")
    for terminal in TERMINAL:
        assert states_before(terminal) == ("pending", "outcome_unknown", "submitted", "in_progress")


def test_all_statuses_are_the_stored_values_in_order():
    assert ALL_STATUSES == (
        "pending",
        "outcome_unknown",
        "submitted",
        "in_progress",
        "completed",
        "failed",
        "cancelled",
    )
