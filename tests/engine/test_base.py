"""prefill_take: chunks stay within the budget, never leave or make a lone last token, and always finish a prompt."""

from __future__ import annotations

import pytest

from appliance.engine.base import prefill_take


@pytest.mark.parametrize(("left", "budget", "take"), [
    (10, 4, 4),   # a plain chunk
    (3, 4, 3),    # the whole rest fits
    (5, 4, 5),    # one over rather than a lone token next step
    (6, 4, 4),    # leaves two: fine
    (1, 4, 1),    # a one-token prompt is just that
    (1, 1, 1),
    (2, 1, 2),    # one over again
    (3, 1, 0),    # a lone first token would follow a cached past: wait for a fuller budget
    (40, 1, 0),
])
def test_examples(left, budget, take):
    assert prefill_take(left, budget) == take


def test_properties_over_all_small_cases():
    for left in range(1, 60):
        for budget in range(1, 60):
            take = prefill_take(left, budget)
            case = (left, budget, take)
            assert 0 <= take <= left, case
            assert take <= budget or take == left == budget + 1, case  # at most one over, and only to finish
            assert left - take != 1 or take == 0, case  # never leaves a lone last token
            assert take != 1 or left == 1, case  # never a lone-token chunk of a longer prompt
            assert (take == 0) == (budget == 1 and left >= 3), case  # waits only when it must
            if take not in (0, left):
                assert take == budget, case  # otherwise greedy: the whole budget


@pytest.mark.parametrize("budget", [2, 3, 4, 7, 256])
def test_any_prompt_is_finished_in_chunks_that_respect_the_budget(budget):
    for length in range(1, 3 * budget + 4):
        left, chunks = length, []
        while left:
            take = prefill_take(left, budget)
            assert take > 0, (length, budget, chunks)
            chunks.append(take)
            left -= take
        assert sum(chunks) == length
        assert all(c <= budget for c in chunks[:-1]) and chunks[-1] <= budget + 1, chunks
        assert len(chunks) == max(1, -(-(length - 1) // budget)), (length, chunks)  # as few steps as allowed
        assert chunks[-1] > 1 or length == 1, chunks
