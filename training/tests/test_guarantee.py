"""Certified thresholds: exact bounds against known values, and coverage computed or drawn with known answers."""

import math

import numpy as np
import pytest

from ctm.calibrate import agreement_with_full_run, calibrate, certify
from ctm.calibration_evidence import reliability, split_resample
from ctm.guarantee import (
    binomial_cdf,
    clopper_pearson_upper,
    fixed_sequence,
    hoeffding_bentkus_p_value,
    learn_then_test,
    risk_upper_bound,
)


def test_binomial_cdf_matches_the_sum_of_exact_terms():
    for n, p in [(1, 0.3), (10, 0.5), (37, 0.02), (200, 0.9)]:
        for k in range(n + 1):
            exact = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))
            assert binomial_cdf(k, n, p) == pytest.approx(exact, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(
    ("k", "n", "delta", "known"),
    [
        (1, 10, 0.025, 0.4450),  # the two-sided 95% Clopper-Pearson interval for 1/10 is (0.0025, 0.4450)
        (5, 100, 0.025, 0.1128),  # ... for 5/100: (0.0164, 0.1128)
        (0, 100, 0.05, 1 - 0.05 ** (1 / 100)),  # no errors: the closed form 1 - delta^(1/n)
        (0, 1003, 0.05, 1 - 0.05 ** (1 / 1003)),
    ],
)
def test_clopper_pearson_against_known_values(k, n, delta, known):
    assert clopper_pearson_upper(k, n, delta) == pytest.approx(known, abs=5e-5)
    assert clopper_pearson_upper(n, n, delta) == 1.0


@pytest.mark.parametrize(("n", "delta"), [(20, 0.1), (60, 0.05), (150, 0.01)])
def test_clopper_pearson_covers_with_at_least_the_confidence_exactly(n, delta):
    # P(U(K) >= p) for K ~ Bin(n, p), summed exactly over k: no sampling, no luck.
    bounds = [clopper_pearson_upper(k, n, delta) for k in range(n + 1)]
    for p in np.linspace(0.01, 0.99, 40):
        coverage = sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1) if bounds[k] >= p)
        assert coverage >= 1 - delta - 1e-9, (p, coverage)
    # And it is exact, not vacuous: somewhere the coverage comes within a few points of 1 - delta.
    worst = min(
        sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1) if bounds[k] >= p)
        for p in np.linspace(0.01, 0.99, 400)
    )
    assert worst < 1 - delta + 0.05


def test_p_value_and_upper_bound_agree():
    losses = np.array([1] * 7 + [0] * 193, dtype=float)
    bound = risk_upper_bound(losses, 0.05)
    assert binomial_cdf(7, 200, bound * 1.001) < 0.05 < binomial_cdf(7, 200, bound * 0.999)
    fractional = np.full(200, 0.05)
    hb = risk_upper_bound(fractional, 0.05)
    assert 0.05 < hb < 0.2
    assert hoeffding_bentkus_p_value(0.05, 200, hb * 1.01) <= 0.05


def test_fixed_sequence_stops_at_the_first_failure_and_is_lazy():
    seen = []

    def p_values():
        for p in [0.001, 0.01, 0.2, 0.0001]:
            seen.append(p)
            yield p

    assert fixed_sequence(p_values(), 0.05) == 1  # 0.0001 after the failure does not count
    assert seen == [0.001, 0.01, 0.2]
    assert fixed_sequence([0.5, 0.0], 0.05) is None


def synthetic_risks(alpha: float) -> np.ndarray:
    """True error rates of 25 thresholds, most conservative first: rising to alpha, a plateau just above
    it where a lucky sample looks good enough, a non-monotonic dip, then far above."""
    risks = np.r_[np.linspace(0.2 * alpha, alpha, 10), np.full(10, 1.15 * alpha), np.linspace(1.5 * alpha, 0.5, 5)]
    risks[12] = 0.5 * alpha  # safe, but behind riskier thresholds: fixed-sequence must not jump to it
    return risks


def draw_losses(rng: np.random.Generator, risks: np.ndarray, n: int) -> np.ndarray:
    """(L, n) 0/1 losses with true rates `risks`, independent across thresholds (LTT assumes nothing about
    how thresholds relate)."""
    return (rng.random((len(risks), n)) < risks[:, None]).astype(float)


@pytest.mark.parametrize(("alpha", "delta"), [(0.05, 0.1), (0.08, 0.05), (0.1, 0.2)])
def test_learn_then_test_meets_the_target_with_at_least_the_confidence(alpha, delta):
    risks = synthetic_risks(alpha)
    rng = np.random.default_rng(1234)
    draws, n = 600, 400
    held, naive_held = 0, 0
    for _ in range(draws):
        losses = draw_losses(rng, risks, n)
        chosen = learn_then_test(losses, alpha, delta)
        held += chosen is None or risks[chosen] <= alpha
        # The old rule: the riskiest threshold whose calibration error rate meets the target.
        meeting = np.flatnonzero(losses.mean(1) <= alpha)
        naive_held += len(meeting) == 0 or risks[meeting.max()] <= alpha
    # 600 seeded draws: three standard errors of a proportion at 1 - delta below it is the bar.
    tolerance = 3 * math.sqrt(delta * (1 - delta) / draws)
    assert held / draws >= 1 - delta - tolerance
    # The same draws show the test can fail: selecting on the sample alone over-promises.
    assert naive_held / draws < 1 - delta - tolerance


def test_certify_on_synthetic_scores():
    # Two ticks; certainty 0.95 at tick 1 for half the items, which are then wrong.
    certainty = np.array([[0.95, 0.99]] * 50 + [[0.1, 0.99]] * 950)
    correct = np.array([[0.0, 1.0]] * 50 + [[1.0, 1.0]] * 950)
    table = certify(certainty, 1 - correct, thresholds=(0.5, 0.9, 0.97, 1.0), targets=(0.9, 0.97, 0.999))
    by_target = {p["target"]: p for p in table["certified"] if p["confidence"] == 0.95}
    # Threshold 0.9 (and 0.5) stop the 50 at tick 1 (5% wrong); 0.97 waits for tick 2 (all right).
    assert by_target[0.9]["threshold"] == 0.5
    assert by_target[0.97]["threshold"] == 0.97
    assert by_target[0.999]["threshold"] is None  # 0 errors in 1000 bounds the error at 0.3%, not 0.1%
    assert by_target[0.999]["risk_bound"] == pytest.approx(1 - 0.05 ** (1 / 1000))
    assert by_target[0.97]["mean_ticks"] == 2


def test_agreement_with_the_full_run_makes_threshold_one_fully_consistent():
    rng = np.random.default_rng(0)
    certainty = rng.random((200, 6))
    predictions = rng.integers(0, 3, (200, 6, 1))
    agreement = agreement_with_full_run(certainty, predictions)
    assert (agreement[np.arange(200), certainty.argmax(1)] == 1).all()
    correct = (predictions == 0).mean(-1)
    table = calibrate({"certainty": certainty}, correct, predictions, grids={"certainty": (0.5, 1.0)})
    assert table["signals"]["certainty"]["thresholds"][-1]["consistency"] == 1.0
    assert table["schema_version"] == 3
    consistency = table["signals"]["certainty"]["guarantees"]["consistency"]["certified"]
    assert all(p["threshold"] in (0.5, 1.0, None) for p in consistency)


def test_split_resample_coverage_against_a_known_population():
    rng = np.random.default_rng(7)
    risks = synthetic_risks(0.07)
    losses = draw_losses(rng, risks, 2000)
    ticks = np.tile(np.arange(len(risks), 0, -1)[:, None], (1, 2000)).astype(float)
    thresholds = list(np.linspace(1.0, 0.5, len(risks)))
    rows = split_resample(losses, ticks, thresholds, (0.9, 0.95), (0.9,), splits=300, seed=3, population=True)
    for row in rows:
        if row["rule"] == "ltt":
            assert row["coverage"] >= 0.9 - 3 * math.sqrt(0.09 / 300)
    old = [r for r in rows if r["rule"] == "old"]
    assert min(r["coverage"] for r in old) < 0.8


def test_split_resample_covers_fractional_losses_too():
    # A multi-position answer (a maze route) loses the fraction of its positions it gets wrong; the
    # evidence tests those with Hoeffding-Bentkus, as calibration.json certifies them.
    rng = np.random.default_rng(11)
    risks = synthetic_risks(0.07)
    losses = np.stack([draw_losses(rng, risks, 2000) for _ in range(4)]).mean(0)  # (L, N), in quarters
    assert not np.all((losses == 0) | (losses == 1))
    ticks = np.tile(np.arange(len(risks), 0, -1)[:, None], (1, 2000)).astype(float)
    thresholds = list(np.linspace(1.0, 0.5, len(risks)))
    rows = split_resample(losses, ticks, thresholds, (0.9, 0.95), (0.9,), splits=200, seed=4, population=True)
    ltt = [r for r in rows if r["rule"] == "ltt"]
    assert ltt and all(r["coverage"] >= 0.9 - 3 * math.sqrt(0.09 / 200) for r in ltt)
    assert max(r["certified_fraction"] for r in ltt) > 0


def test_reliability_of_a_perfectly_calibrated_predictor_is_near_zero():
    rng = np.random.default_rng(5)
    confidence = rng.random(20000)
    right = (rng.random(20000) < confidence).astype(float)
    assert reliability(confidence, right)["ece"] < 0.02
    assert reliability(np.ones(1000), np.zeros(1000))["ece"] == 1.0
