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
