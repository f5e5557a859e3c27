import pytest

from falbridge.models.states import TERMINAL, JobStatus, can_transition, states_before

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
