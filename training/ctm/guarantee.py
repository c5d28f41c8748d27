"""Certified halting thresholds: Learn-then-Test with exact binomial upper bounds.

A threshold lambda has a risk R(lambda): the probability that the answer halting at lambda is wrong
(accuracy) or differs from the answer after all ticks (consistency). For a target accuracy a the
tolerated risk is alpha = 1 - a. Learn-then-Test (Angelopoulos, Bates et al., 2021) turns any valid
p-value for H0: R(lambda) > alpha into a selection with

    P( R(selected) <= alpha ) >= 1 - delta      over the draw of the calibration set.

Fixed-sequence testing: order the thresholds from the most conservative (1.0: every tick) downwards,
test each at level delta, and stop at the first one that cannot be certified; every threshold passed
before it is certified, and the selection is the last (lowest) one. No multiplicity correction is
needed because the order is fixed before looking at the data, and the risk need not be monotonic in
the threshold: a non-monotonic dip just ends the sequence early.

For 0/1 losses the p-value is the exact binomial tail, P(Bin(n, alpha) <= k) for k errors in n, which
is certifying exactly when the one-sided Clopper-Pearson upper bound on the error is <= alpha. For
losses in [0, 1] that are not 0/1 (the fraction of positions wrong, for multi-position outputs) it is
the Hoeffding-Bentkus p-value (Bates et al., 2021, "Distribution-free, risk-controlling prediction
sets"), which only needs the losses to be bounded.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

import numpy as np

# What a calibration file certifies: every target on this grid at every confidence on this grid. A
# request between grid points is served by the next stricter one (a higher target or a higher
# confidence certifies a lower one), so the grid only costs a little conservatism, never validity.
TARGETS = tuple(
    round(float(t), 4)
    for t in [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, *np.arange(0.9, 0.99, 0.005), 0.99, 0.9925, 0.995, 0.9975, 0.999]
)
CONFIDENCES = (0.5, 0.8, 0.9, 0.95, 0.99, 0.999)

METHOD = (
    "Learn-then-Test: fixed-sequence testing over the thresholds from 1.0 downwards, each at level "
    "1 - confidence, with exact binomial (Clopper-Pearson) p-values for 0/1 losses and Hoeffding-Bentkus "
    "p-values for fractional losses"
)


@functools.lru_cache(maxsize=1 << 16)
def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed exactly in log space (n up to a few hundred thousand)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    i = np.arange(k + 1, dtype=np.float64)
    # log C(n, i) by the recurrence C(n, i) = C(n, i - 1) (n - i + 1) / i
    log_choose = np.concatenate(([0.0], np.cumsum(np.log((n - i[1:] + 1) / i[1:]))))
    terms = log_choose + i * log_p + (n - i) * log_q
    top = terms.max()
    return float(min(1.0, math.exp(top) * np.exp(terms - top).sum()))


def clopper_pearson_upper(k: int, n: int, delta: float) -> float:
    """One-sided upper confidence bound at level 1 - delta on a binomial proportion, k successes in n.

    The p with P(Bin(n, p) <= k) = delta, i.e. the regularised incomplete beta I_p(k + 1, n - k) =
    1 - delta (the 1 - delta quantile of Beta(k + 1, n - k)). Found by bisection on the binomial tail,
    which is continuous and strictly decreasing in p.
    """
    if not 0 <= k <= n or n <= 0:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if k == n:
        return 1.0
    lo, hi = k / n, 1.0
    for _ in range(100):  # 2^-100: far below float resolution
        mid = (lo + hi) / 2
        if binomial_cdf(k, n, mid) > delta:
            lo = mid
        else:
            hi = mid
    return hi


def hoeffding_bentkus_p_value(mean_loss: float, n: int, alpha: float) -> float:
    """p-value for H0: E[loss] > alpha from n losses in [0, 1] with sample mean `mean_loss`."""
    if mean_loss >= alpha:
        return 1.0
    if alpha >= 1.0:
        return 0.0
    kl = mean_loss * math.log(mean_loss / alpha) if mean_loss > 0 else 0.0
    kl += (1 - mean_loss) * math.log((1 - mean_loss) / (1 - alpha))
    hoeffding = math.exp(-n * kl)
    bentkus = math.e * binomial_cdf(math.ceil(n * mean_loss), n, alpha)
    return min(1.0, hoeffding, bentkus)


def p_value(losses: np.ndarray, alpha: float) -> float:
    """Valid p-value for H0: E[loss] > alpha, given i.i.d. losses in [0, 1]."""
    n = len(losses)
    if np.all((losses == 0) | (losses == 1)):
        return binomial_cdf(int(losses.sum()), n, alpha)
    return hoeffding_bentkus_p_value(float(losses.mean()), n, alpha)


def risk_upper_bound(losses: np.ndarray, delta: float) -> float:
    """Upper confidence bound at level 1 - delta on E[loss]: the smallest alpha the p-value rejects at."""
    n = len(losses)
    if np.all((losses == 0) | (losses == 1)):
        return clopper_pearson_upper(int(losses.sum()), n, delta)
    lo, hi = float(losses.mean()), 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if hoeffding_bentkus_p_value(float(losses.mean()), n, mid) <= delta:
            hi = mid
        else:
            lo = mid
    return hi


def fixed_sequence(p_values: Iterable[float], delta: float) -> int | None:
    """Index of the last hypothesis rejected when testing in order at level delta; None if the first fails.

    The first p-value belongs to the most conservative threshold. Lazy: nothing after the first
    failure is computed.
    """
    selected = None
    for i, p in enumerate(p_values):
        if p > delta:
            break
        selected = i
    return selected


def learn_then_test(losses: np.ndarray, alpha: float, delta: float) -> int | None:
    """Which threshold to use, as an index into the rows of `losses` (most conservative first).

    losses (L, N): loss of every calibration item at each of L thresholds, ordered from the most
    conservative. Returns None when not even the first can be certified.
    """
    return fixed_sequence((p_value(row, alpha) for row in losses), delta)
