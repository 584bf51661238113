"""The bench acceptance rule: wall-clock ratio OR CPU ratio >= 0.9 (bench/README.md says why)."""

from __future__ import annotations

import pytest

from bench.hsm_sign import CHECK_ATTEMPTS, CHECK_THRESHOLD, CaseResult, measure_checked


def _result(wall: float, cpu: float) -> CaseResult:
    return CaseResult("rsa-2048", 1, baseline=[1000.0] * 5, candidate=[1000.0 * wall] * 5,
                      baseline_cpu=[1000.0] * 5, candidate_cpu=[1000.0 * cpu] * 5)


@pytest.mark.parametrize(("wall", "cpu", "passes"), [
    (0.97, 0.98, True),
    (0.85, 0.95, True),   # wall clock disturbed by other load, CPU cost fine
    (0.95, 0.85, True),
    (0.89, 0.89, False),  # a real overhead shows on both clocks
])
def test_either_ratio_passes_the_check(wall: float, cpu: float, passes: bool) -> None:
    result = _result(wall, cpu)
    assert result.ratio == pytest.approx(wall) and result.cpu_ratio == pytest.approx(cpu)
    assert result.passes_check is passes
    assert CHECK_THRESHOLD == 0.9


def test_a_missed_check_is_measured_again_until_it_passes() -> None:
    rounds = iter([_result(0.86, 0.86), _result(0.97, 0.98), _result(0.5, 0.5)])
    result, missed = measure_checked(lambda: next(rounds), attempts=3)
    assert result.passes_check and [m.ratio for m in missed] == [pytest.approx(0.86)]


def test_a_real_overhead_fails_every_attempt() -> None:
    calls = []

    def measure() -> CaseResult:
        calls.append(1)
        return _result(0.8, 0.8)

    result, missed = measure_checked(measure, attempts=3)
    assert not result.passes_check and len(missed) == 2 and len(calls) == 3
    assert CHECK_ATTEMPTS == 3


def test_one_attempt_when_not_checking() -> None:
    result, missed = measure_checked(lambda: _result(0.5, 0.5), attempts=1)
    assert not result.passes_check and missed == []
