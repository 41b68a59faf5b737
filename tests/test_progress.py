"""progress.compute: Dask's bar on a terminal, plain dask.compute otherwise, the same results either way."""

from __future__ import annotations

import io

import dask
import numpy as np
import pytest
from conftest import split_with_empty

from mailseg_dist.core import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def bar_off_afterwards():
    yield
    progress.configure(False)


def test_the_bar_needs_the_setting_and_a_terminal():
    assert progress.configure(True, Terminal()) is True
    assert progress.configure(False, Terminal()) is False
    assert progress.configure(True, io.StringIO()) is False  # a pipe or file: log lines only


def work(clean_users):
    ddf = split_with_empty(clean_users)  # includes an empty partition
    return ddf["send"].sum(), dask.delayed(len)(ddf), ddf[ddf["open"] > 0]["Id"]


def test_mixed_kinds_come_back_in_the_order_given(clean_users):
    with dask.config.set(scheduler="sync"):
        total, rows, opened = progress.compute(*work(clean_users))  # dask.compute gave (total, opened, rows)
    assert total == clean_users["send"].sum() and rows == len(clean_users)
    np.testing.assert_array_equal(opened.to_numpy(), clean_users.loc[clean_users["open"] > 0, "Id"].to_numpy())


def test_on_a_terminal_dask_draws_its_bar_and_results_match_pandas(clean_users, dask_client, capsys):
    progress.configure(True, Terminal())
    total, rows, opened = progress.compute(*work(clean_users))
    drawn = capsys.readouterr().out
    assert "% Completed" in drawn and "100% Completed" in drawn
    assert total == clean_users["send"].sum() and rows == len(clean_users)
    np.testing.assert_array_equal(opened.to_numpy(), clean_users.loc[clean_users["open"] > 0, "Id"].to_numpy())


@pytest.mark.parametrize("setting", ["off", "sync scheduler"])
def test_without_a_bar_it_is_plain_dask_compute(clean_users, dask_client, capsys, setting):
    progress.configure(setting != "off", Terminal())
    with dask.config.set(scheduler="sync" if setting == "sync scheduler" else "dask.distributed"):
        got = progress.compute(*work(clean_users))
        want = dask.compute(work(clean_users)[0])
    assert capsys.readouterr().out == ""
    assert got[0] == want[0] and got[1] == len(clean_users)
    np.testing.assert_array_equal(got[2].to_numpy(), clean_users.loc[clean_users["open"] > 0, "Id"].to_numpy())
