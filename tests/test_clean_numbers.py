"""The vectorised text paths of the clean stage give what Python and pandas give, value for value.

`_stripped` finds the values to strip with Arrow and strips them in Python; `_as_number` parses with
Arrow when every value allows it. Both are checked against the plain per-value answers (str.strip,
pd.to_numeric) on every character Python calls whitespace and on number-like text from hypothesis,
in the two string dtypes a raw part can have (Arrow-backed str from Parquet, object from pandas).
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailseg_dist.inputs.clean import _arrow_numbers, _as_number, _stripped

SPACES = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
DTYPES = ["str", object]
TRICKY = ["1", "1.5", "1e3", "-2", "+2", "inf", "-inf", "nan", "NaN", "Infinity", "1.", ".5", "1_000", "0x10",
          "1,5", "1e400", "-0", "-0.0", "00012", "9007199254740993", "0.1234567890123456789", "1E-3", "١٢",
          "e5", "1e", "-", "+", "4.9e-324", "3.0000000000000004", "True", "", None, "abc", "sí"]


def _reference_numbers(values) -> np.ndarray:
    text = pd.Series(values, dtype=object).map(lambda v: v.strip() if isinstance(v, str) else v)
    return pd.to_numeric(text, errors="coerce").astype("float64").to_numpy()


def _same(got: np.ndarray, want: np.ndarray) -> bool:
    """Equal values, NaN where NaN, and the same sign of zero."""
    return bool(np.array_equal(got, want, equal_nan=True) and (np.signbit(got) == np.signbit(want)).all())


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_python_whitespace_character_is_stripped_at_either_end(dtype):
    values = [f"{space}7{space}" for space in SPACES] + ["7", "\u200b7", "é7ñ", "", None]
    got = _stripped(pd.Series(values, dtype=dtype))
    want = [v.strip() if isinstance(v, str) else v for v in values]
    assert len(SPACES) == 29  # Python's whitespace: ASCII blanks and controls, and Unicode spaces
    assert [None if pd.isna(v) else v for v in got] == want


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_column_with_nothing_to_strip_is_returned_as_it_is(dtype):
    column = pd.Series(["12", "3.5", None, "abc"], dtype=dtype)
    assert _stripped(column) is column


@pytest.mark.parametrize("dtype", DTYPES)
def test_numbers_of_tricky_text_equal_pandas(dtype):
    for value in TRICKY:
        column = pd.Series(["3", value, " 4 "], dtype=dtype)
        got = _as_number(_stripped(column)).to_numpy()
        assert _same(got, _reference_numbers(["3", value, " 4 "])), value


def test_arrow_reads_plain_numbers_and_leaves_the_rest_to_pandas():
    assert _same(_arrow_numbers(pd.Series(["1", "2.5", "", None, "1e3"], dtype="str")),
                 np.array([1.0, 2.5, np.nan, np.nan, 1000.0]))
    for refused in ["abc", "-0", "1_000", "sí"]:
        assert _arrow_numbers(pd.Series(["1", refused], dtype="str")) is None, refused


NUMBER_LIKE = st.text(alphabet="0123456789.eE+-_ \t,xin", max_size=8)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(NUMBER_LIKE, st.none()), min_size=1, max_size=6), dtype=st.sampled_from(DTYPES))
def test_numbers_of_any_number_like_text_equal_pandas(values, dtype):
    got = _as_number(_stripped(pd.Series(values, dtype=dtype))).to_numpy()
    assert _same(got, _reference_numbers(values)), values
