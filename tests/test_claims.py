from __future__ import annotations

import pytest

from workbench.claims import Claim, claims_table, readable


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.012345, "0.0123"),
        (41, "41"),
        (3.2e-05, "3.2e-5"),
        (1e-06, "1e-6"),
        (6.54e-4, "6.54e-4"),
        (-2.5e-7, "-2.5e-7"),
        (1000.0, "1000"),
        (36000.0, "36000"),
        (12345.6, "12346"),
        (123456.0, "1.23e+5"),
        (2.8e5, "2.8e+5"),
        (0.0, "0"),
        (True, "yes"),
        (False, "no"),
        ("not reached", "not reached"),
        (2.5, "2.5"),
    ],
)
def test_readable_numbers_avoid_scientific_notation_where_plain_reads_better(value, text):
    assert readable(value) == text


VALUES = {"a.error": 0.01, "b.error": 0.03, "steps": "not reached", "ok": True, "count": 1}


def test_a_claim_holds_by_a_number_or_by_another_metric():
    assert Claim("a small", "X 2020", "a.error", below=0.02).verdict(VALUES) == (
        "0.01 < 0.02",
        True,
    )
    assert Claim("a beats b", "X", "a.error", below="b.error").verdict(VALUES) == (
        "0.01 < 0.03 (b.error)",
        True,
    )
    assert Claim("b beats a", "X", "b.error", below="a.error").verdict(VALUES)[1] is False
    assert Claim("in a band", "X", "a.error", above=0.001, below=0.02).verdict(VALUES)[1]
    assert not Claim("in a band", "X", "a.error", above=0.011, below=0.02).verdict(VALUES)[1]


def test_text_where_a_number_is_needed_does_not_hold_and_bools_are_not_counts():
    assert Claim("reached", "X", "steps", below=40).verdict(VALUES) == ("not reached < 40", False)
    assert Claim("ok", "X", "ok", equals=True).verdict(VALUES) == ("yes", True)
    assert Claim("not ok", "X", "ok", equals=False).verdict(VALUES) == ("yes (expected no)", False)
    assert Claim("one", "X", "count", equals=True).verdict(VALUES)[1] is False
    assert Claim("one", "X", "count", equals=1).verdict(VALUES)[1] is True


def test_contains_reads_a_list_recorded_as_text():
    values = {"invariant": "soap, shampoo"}
    assert Claim("soap", "X", "invariant", contains="soap").verdict(values) == (
        "soap, shampoo (includes soap)",
        True,
    )
    assert Claim("adam", "X", "invariant", contains="adam").verdict(values)[1] is False
    assert Claim("so", "X", "invariant", contains="so").verdict(values)[1] is False  # items


def test_a_claim_needs_a_test_and_its_metrics_recorded():
    with pytest.raises(ValueError, match="give below="):
        Claim("vague", "X", "a.error")
    with pytest.raises(KeyError, match=r"c\.error, which this run did not record"):
        Claim("c", "X", "a.error", below="c.error").verdict(VALUES)


def test_claims_table_numbers_rows_and_gives_a_verdict_per_claim():
    table = claims_table(
        [
            Claim("a small", "X", "a.error", below=0.02),
            Claim("b small", "X", "b.error", below=0.02),
        ],
        VALUES,
    )
    assert list(table.columns) == ["claim", "paper", "measured", "verdict"]
    assert list(table.index) == [1, 2]
    assert list(table["verdict"]) == ["holds", "does not hold"]


def test_a_band_reads_low_value_high():
    claim = Claim("in a band", "X", "a.error", above=0.001, below="b.error")
    assert claim.verdict(VALUES) == ("0.001 < 0.01 < 0.03 (b.error)", True)
