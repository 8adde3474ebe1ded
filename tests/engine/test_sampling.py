"""Next-token sampling: greedy is argmax, seeds reproduce, temperature and top-p shape the softmax as specified."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.engine.sampling import Sampler, SamplingParams


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def counts(sampler: Sampler, logits: np.ndarray, n: int) -> np.ndarray:
    return np.bincount([sampler(logits) for _ in range(n)], minlength=logits.shape[0])


def assert_follows(observed: np.ndarray, p: np.ndarray) -> None:
    """Each count within 5 sigma (+1) of its binomial expectation; zero-probability tokens never drawn."""
    n = observed.sum()
    expected = n * p
    sigma = np.sqrt(n * p * (1 - p))
    bad = np.abs(observed - expected) > 5 * sigma + 1
    assert not bad.any(), f"observed {observed.tolist()} vs expected {np.round(expected).tolist()}"
    assert not observed[p == 0].any(), f"drew tokens outside the distribution: {observed.tolist()}"


def test_greedy_is_argmax_and_ignores_the_seed():
    rng = np.random.default_rng(0)
    for seed in (None, 1, 2):
        s = Sampler(SamplingParams(temperature=0.0, top_p=0.5, seed=seed))
        for _ in range(50):
            logits = rng.normal(size=97).astype(np.float32)
            assert s(logits) == int(np.argmax(logits))
    assert Sampler(SamplingParams(temperature=0.0))(np.array([1.0, 3.0, 3.0, 2.0])) == 1  # first of a tie


def test_same_seed_same_sequence_different_seeds_differ():
    logits = np.linspace(0, 2, 50).astype(np.float32)

    def draws(seed):
        s = Sampler(SamplingParams(temperature=1.0, seed=seed))
        return [s(logits) for _ in range(200)]

    assert draws(1234) == draws(1234)
    assert draws(1234) != draws(1235)
    assert len(set(draws(1234))) > 20  # it really samples


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_draws_follow_the_tempered_softmax(temperature):
    logits = np.array([2.0, 1.0, 0.0, -1.0, 0.5], np.float32)
    s = Sampler(SamplingParams(temperature=temperature, seed=7))
    assert_follows(counts(s, logits, 20_000), softmax(logits.astype(np.float64) / temperature))


def test_large_logits_do_not_overflow():
    logits = np.array([1000.0, 999.0, -1000.0], np.float32)
    s = Sampler(SamplingParams(temperature=1.0, seed=3))
    assert_follows(counts(s, logits, 5_000), softmax(np.array([1.0, 0.0, -2000.0])))


@pytest.mark.parametrize(("top_p", "nucleus"), [(0.3, [3]), (0.7, [3, 1]), (0.85, [3, 1, 2]), (0.99, [3, 1, 2, 0])])
def test_top_p_keeps_only_the_smallest_nucleus(top_p, nucleus):
    # probabilities 0.04, 0.30, 0.15, 0.50, 0.01 at shuffled positions: the nucleus is by probability, not index
    probs = np.array([0.04, 0.30, 0.15, 0.50, 0.01])
    logits = np.log(probs).astype(np.float32)
    s = Sampler(SamplingParams(temperature=1.0, top_p=top_p, seed=11))
    want = np.zeros_like(probs)
    want[nucleus] = probs[nucleus]
    assert_follows(counts(s, logits, 10_000), want / want.sum())


def test_top_p_applies_to_the_tempered_distribution():
    probs = np.array([0.6, 0.3, 0.1])
    logits = np.log(probs)
    # untempered, top_p 0.55 keeps the 0.6 token alone; at temperature 2 (~0.47, 0.33, 0.19) it needs two tokens
    tempered = softmax(logits / 2.0)
    s = Sampler(SamplingParams(temperature=2.0, top_p=0.55, seed=5))
    want = np.array([tempered[0], tempered[1], 0.0])
    assert_follows(counts(s, logits, 10_000), want / want.sum())
    s = Sampler(SamplingParams(temperature=1.0, top_p=0.55, seed=5))
    assert set(counts(s, logits, 2_000).nonzero()[0]) == {0}


def test_top_p_reached_exactly_keeps_no_extra_token():
    # four equal logits give exactly 0.25 each: a mass of exactly 0.5 is reached by two tokens (ties go by index)
    s = Sampler(SamplingParams(temperature=1.0, top_p=0.5, seed=2))
    assert_follows(counts(s, np.zeros(4, np.float32), 4_000), np.array([0.5, 0.5, 0.0, 0.0]))


# -- logit processing ---------------------------------------------------------------------------------

def test_logit_bias_minus_100_bans_and_plus_100_forces():
    logits = np.array([5.0, 4.0, 3.0, 2.0], np.float32)
    banned = Sampler(SamplingParams(temperature=0.0, logit_bias={0: -100.0}))
    assert banned(logits) == 1
    forced = Sampler(SamplingParams(temperature=1.0, seed=3, logit_bias={3: 100.0}))
    assert set(counts(forced, logits, 2_000).nonzero()[0]) == {3}
    never = Sampler(SamplingParams(temperature=2.0, seed=4, logit_bias={0: -100.0, 1: -100.0}))
    assert set(counts(never, logits, 2_000).nonzero()[0]) <= {2, 3}


def test_moderate_bias_shifts_the_distribution_by_exactly_that_logit():
    logits = np.zeros(3, np.float32)
    s = Sampler(SamplingParams(temperature=1.0, seed=9, logit_bias={2: 1.0}))
    assert_follows(counts(s, logits, 20_000), softmax(np.array([0.0, 0.0, 1.0])))


def test_presence_and_frequency_penalties_follow_openai_formula():
    """logit[j] -= count[j] * frequency + (count[j] > 0) * presence, over this sequence's own tokens."""
    s = Sampler(SamplingParams(temperature=0.0, presence_penalty=0.5, frequency_penalty=0.25, logprobs=0))
    logits = np.array([3.0, 2.9, 0.0], np.float32)
    picks = [s.choose(logits).token for _ in range(3)]
    # token 0 once: 3 - 0.5 - 0.25 = 2.25 < 2.9, so token 1; then 2.9 - 0.75 = 2.15 < 2.25, so token 0 again
    assert picks == [0, 1, 0]
    row = s.process(logits)
    assert row[0] == pytest.approx(3.0 - 0.5 - 2 * 0.25) and row[1] == pytest.approx(2.9 - 0.5 - 0.25)
    assert row[2] == 0.0


def test_logprobs_are_a_distribution_and_top_is_ordered():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=40).astype(np.float32)
    s = Sampler(SamplingParams(temperature=0.0, logprobs=40))
    c = s.choose(logits)
    assert c.token == int(np.argmax(logits)) and c.top[0] == (c.token, c.logprob)
    probs = np.exp([lp for _, lp in c.top])
    assert probs.sum() == pytest.approx(1.0, abs=1e-9)
    assert [lp for _, lp in c.top] == sorted((lp for _, lp in c.top), reverse=True)
    assert c.logprob == pytest.approx(np.log(softmax(logits.astype(np.float64))[c.token]))
    few = Sampler(SamplingParams(temperature=1.0, seed=2, logprobs=3)).choose(logits)
    assert len(few.top) == 3 and few.top[0][1] >= few.top[2][1]


def test_logprobs_describe_the_masked_and_biased_distribution():
    logits = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    allowed = np.array([True, True, False, False])
    c = Sampler(SamplingParams(temperature=0.0, logprobs=4, logit_bias={0: 1.0})).choose(logits, allowed)
    assert c.token in (0, 1)  # 2.0 vs 1.0 + 1.0: a tie, the first wins
    assert {t for t, _ in c.top} == {0, 1}  # masked tokens are no options and never -inf in the output
    assert sum(np.exp(lp) for _, lp in c.top) == pytest.approx(1.0)


def test_mask_is_obeyed_and_an_empty_mask_is_an_error():
    logits = np.array([9.0, 0.0, 0.0, 0.0], np.float32)
    allowed = np.array([False, True, False, True])
    s = Sampler(SamplingParams(temperature=1.0, seed=5))
    assert set(np.bincount([s.choose(logits, allowed).token for _ in range(500)], minlength=4).nonzero()[0]) == {1, 3}
    with pytest.raises(ValueError, match="no token is allowed"):
        Sampler(SamplingParams(logit_bias={1: -100.0})).choose(logits, np.array([False, True, False, False]))


def test_top_k_keeps_the_k_most_likely():
    probs = np.array([0.1, 0.4, 0.2, 0.3])
    s = Sampler(SamplingParams(temperature=1.0, top_k=2, seed=8))
    assert_follows(counts(s, np.log(probs), 10_000), np.array([0.0, 0.4, 0.0, 0.3]) / 0.7)


def test_each_choice_of_a_seeded_request_draws_its_own_reproducible_stream():
    logits = np.zeros(50, np.float32)

    def draws(choice):
        s = Sampler(SamplingParams(temperature=1.0, seed=77).for_choice(choice))
        return [s(logits) for _ in range(30)]

    assert draws(0) == draws(0) and draws(1) == draws(1)
    assert len({tuple(draws(i)) for i in range(3)}) == 3
    plain = Sampler(SamplingParams(temperature=1.0, seed=77))
    assert draws(0) == [plain(logits) for _ in range(30)]  # the first choice is what n=1 gives
