"""synth config: the preset lists every key, overrides parse as YAML, bad keys and values are
errors naming the key (and the file and line for YAML), and the CLI turns them into exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import synth_fixtures as fx
from petool_jax.app.cli import UserError, main
from synth.config import DEFAULTS, load_synth_config

PRESET = Path(__file__).resolve().parents[1] / "configs" / "synth" / "petoolbench.yaml"


def _keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out |= _keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
    return out


def test_preset_lists_every_key_with_the_default_values():
    preset = yaml.safe_load(PRESET.read_text())
    assert _keys(preset) == _keys(DEFAULTS)
    config = load_synth_config(PRESET, ["tool_pool=x.json"])
    assert config["candidates"] == 10 and config["settings"] == ["p", "r", "c"]
    assert config["llm"]["model"] == "gpt-4o-mini"
    assert config["history"] == {"min_len": 2, "max_len": 20, "rated0_max": 5, "negative_fraction": 0.75}
    # The released benchmark's structure by default (../shared/petoolbench/README.md).
    assert config["structure"]["visible_p"] == 0.46 and config["structure"]["visible_rc"] == 0.39
    assert config["structure"]["group_sizes"] == [0.68, 0.21, 0.11]
    assert config["structure"]["same_category_share"] == 0.31 and config["structure"]["query_in_history"] == 0.24


def test_overrides_are_parsed_as_yaml(tmp_path):
    config = load_synth_config(PRESET, [
        "tool_pool=[a.json, b.json]", "num_users=20", "llm.model=none", "settings=c,p",
        "history.min_len=3", "embedding.model=local-hash", "test_fraction=0.5", "quality.drop_leaked_test=true",
    ])
    assert config["tool_pool"] == ["a.json", "b.json"] and config["num_users"] == 20
    assert config["llm"]["model"] == "none" and config["settings"] == ["p", "c"]
    assert config["history"]["min_len"] == 3 and config["test_fraction"] == 0.5
    assert config["quality"]["drop_leaked_test"] is True


@pytest.mark.parametrize(
    "override, message",
    [
        ("num_user=5", "override num_user=...: unknown key 'num_user'"),
        ("llm.modle=x", "override llm.modle=...: unknown key 'llm.modle'"),
        ("llm=none", "'llm' is a section"),
        ("num_users=0", "config key 'num_users': expected an integer >= 1, got 0"),
        ("num_users=ten", "override num_users=...: key 'num_users' expects an integer, got 'ten'"),
        ("settings=p,x", "config key 'settings': expected a subset of p,r,c"),
        ("history.max_len=2", "config key 'history.max_len': 2 is below history.min_len 3"),
        ("structure.visible_rc=0.5", "config key 'structure.visible_rc': must not exceed structure.visible_p"),
        ("structure.group_sizes=[1,2]", "config key 'structure.group_sizes': expected three weights"),
        ("structure.visible_p=2", "config key 'structure.visible_p': expected a number in [0, 1], got 2"),
        ("test_fraction=1.5", "config key 'test_fraction': expected a number in [0, 1], got 1.5"),
        ("groups.verify_threshold=0.95", "config key 'groups.verify_threshold': must not exceed groups.same_threshold"),
        ("no_equals_sign", "override 'no_equals_sign': expected key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(UserError) as err:
        load_synth_config(PRESET, ["tool_pool=x.json", "history.min_len=3", override])
    assert message in str(err.value)


def test_unknown_key_in_the_file_names_file_and_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("tool_pool: x.json\nhistory:\n  min_len: 3\n  maxlen: 9\n")
    with pytest.raises(UserError, match=r"c\.yaml: unknown key 'history\.maxlen'; known keys: max_len, min_len, negative_fraction, rated0_max"):
        load_synth_config(path)


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("tool_pool: x.json\nnum_users: [1, 2\nseed: 3\n")
    with pytest.raises(UserError, match=r"c\.yaml: line \d+: not valid YAML"):
        load_synth_config(path)


def test_no_tool_pool_is_an_error():
    with pytest.raises(UserError, match="config key 'tool_pool': no tool sources given"):
        load_synth_config(PRESET)


def test_cli_runs_offline_and_reports_bad_keys(tmp_path, capsys):
    pool = fx.write_petoolbench_pool(tmp_path / "pool.json")
    args = ["synth", "--config", str(PRESET)] + fx.offline_overrides(pool, tmp_path / "out")
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert '"output_dir": "' + str(tmp_path / "out") + '"' in printed
    assert (tmp_path / "out" / "user_entries_test.json").is_file()
    assert main(["synth", "--config", str(PRESET), "tool_pool=x.json", "candidate=5"]) == 2
    assert "petool synth: error: override candidate=...: unknown key 'candidate'" in capsys.readouterr().err
