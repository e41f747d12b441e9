"""Desired state on the bus: applied whole or not at all, the last good one kept."""

from __future__ import annotations

from onboard.link.desired import Outcome, evaluate, reported
from protocols import codec
from protocols.schemas import Assignment, DesiredState


def doc(version: int, bus: str = "b1", trip: str = "T1") -> bytes:
    return codec.encode(DesiredState(bus=bus, version=version, assignment=Assignment(trip_id=trip)))


def test_a_valid_newer_document_is_applied() -> None:
    outcome = evaluate(None, doc(1), "b1")
    assert outcome.applied is not None and outcome.applied.version == 1 and outcome.error is None


def test_an_invalid_document_keeps_the_last_good_one_and_says_why() -> None:
    good = evaluate(None, doc(1), "b1").applied
    bad = doc(2).replace(b'"trip_id":"T1"', b'"trip_id":7')
    outcome = evaluate(good, bad, "b1")
    assert outcome.applied == good
    assert outcome.rejected_version == 2
    assert outcome.error and "trip_id" in outcome.error


def test_an_older_version_or_another_bus_document_is_refused() -> None:
    current = evaluate(None, doc(5), "b1").applied
    assert evaluate(current, doc(4), "b1").applied == current
    refused = evaluate(current, doc(6, bus="b2"), "b1")
    assert refused.applied == current and refused.rejected_version == 6


def test_the_report_carries_the_applied_version_and_assignment() -> None:
    outcome = evaluate(None, doc(3, trip="T9"), "b1")
    r = reported(outcome, "b1", {"records": 4})
    assert (r.version, r.assignment, r.counters) == (3, Assignment(trip_id="T9"), {"records": 4})
    assert reported(Outcome(None), "b1", {}).version == 0
