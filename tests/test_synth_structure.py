"""petool_jax.petoolbench_structure: the preferred tool, its rivals, and whether it is visible."""

from __future__ import annotations

import gzip
import json

import pytest

from eval_fixtures import BAYUT, SELOGER, SPORTS, call, make_entry, past, rental_entry, seloger_entry
from petool_jax.petoolbench_structure import preferred_tool, preferred_visible, rival_tools


def test_visible_when_any_api_of_the_preferred_tool_is_called():
    entry = rental_entry()  # truth Bayut; every setting shows a Bayut call
    assert preferred_tool(entry) == ("Business", "Bayut")
    assert rival_tools(entry) == {("Business", "Seloger"), ("Business", "Idealista.v2")}
    assert [preferred_visible(entry, s) for s in "prc"] == [True, True, True]


def test_hidden_when_only_rivals_and_other_tools_are_called():
    truth = call(BAYUT, locationExternalIDs="1")
    entry = make_entry(7, "q", truth, {
        "p": [past("sports", SPORTS)],
        "r": [past("paris", SELOGER, rating=0, zipCodes="75"), past("sports", SPORTS, rating=1)],
    })
    assert preferred_visible(entry, "p") is False
    assert preferred_visible(entry, "r") is False
    assert preferred_visible(entry, "c") is False  # the setting is absent
    assert preferred_visible(seloger_entry(), "r") is True
    with pytest.raises(ValueError, match="unknown setting"):
        preferred_visible(entry, "x")


def test_release_rates(shared_dir):
    entries = json.load(gzip.open(shared_dir / "petoolbench" / "test_dev.json.gz", "rt", encoding="utf-8"))
    counts = {s: sum(preferred_visible(e, s) for e in entries) for s in "prc"}
    assert len(entries) == 612
    assert counts == {"p": 284, "r": 241, "c": 241}  # 46% / 39% / 39%
