"""The one config loader (petool_jax/config_files.py) that training, synthesis, eval and the
experiment use: defaults <- YAML <- key=value, names and types checked against the defaults."""

import pytest

from petool_jax.config_files import load_config, overridden_keys, parse_override
from petool_jax.errors import UserError

DEFAULTS = {
    "model": None,
    "steps": 10,
    "lr": 1e-4,
    "packing": False,
    "name": "run",
    "files": [],
    "lora": {"rank": 8, "alpha": 16.0},
    "plans": {"cpu": {"steps": 1}},
}


def test_layers_apply_in_order_and_types_follow_the_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 20\nlora:\n  rank: 4\nplans:\n  gpu: {steps: 9}\n")
    config = load_config(DEFAULTS, path, ["lora.alpha=8e0", "lr=1", "files=a.json", "plans.cpu.steps=3",
                                          "model=[x, y]"], open_sections=("plans",))
    assert config == {"model": ["x", "y"], "steps": 20, "lr": 1.0, "packing": False, "name": "run",
                      "files": "a.json", "lora": {"rank": 4, "alpha": 8.0},
                      "plans": {"cpu": {"steps": 3}, "gpu": {"steps": 9}}}
    assert isinstance(config["lr"], float) and isinstance(config["lora"]["alpha"], float)
    assert DEFAULTS["lora"] == {"rank": 8, "alpha": 16.0}  # defaults are never modified


@pytest.mark.parametrize("override, message", [
    ("stepz=3", "override stepz=...: unknown key 'stepz'; known keys: files, lora, lr, model, name, packing, "
                "plans, steps"),
    ("lora.rnak=3", "override lora.rnak=...: unknown key 'lora.rnak'; known keys: alpha, rank"),
    ("steps=ten", "override steps=...: key 'steps' expects an integer, got 'ten'"),
    ("steps=2.5", "key 'steps' expects an integer, got 2.5"),
    ("steps=true", "key 'steps' expects an integer, got True"),
    ("packing=1", "key 'packing' expects true or false, got 1"),
    ("lr=fast", "key 'lr' expects a number, got 'fast'"),
    ("name=3", "key 'name' expects a string, got 3"),
    ("files={a: 1}", "key 'files' expects a list, got {'a': 1}"),
    ("lora=3", "key 'lora' is a section; set its keys (alpha, rank)"),
    ("plans=3", "key 'plans' expects a mapping, got 3"),
    ("steps", "override 'steps': expected key=value"),
    ("a..b=1", "expected key=value with a dotted key"),
    ("steps=[1", "override 'steps=[1': value is not valid YAML"),
])
def test_bad_overrides_name_the_key_and_what_was_expected(override, message):
    with pytest.raises(UserError) as err:
        load_config(DEFAULTS, None, [override], open_sections=("plans",))
    assert message in str(err.value)


def test_file_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(UserError, match=r"nope\.yaml: config file not found"):
        load_config(DEFAULTS, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 3\nlora: [1, 2\n")
    with pytest.raises(UserError, match=r"bad\.yaml: line 3: not valid YAML"):
        load_config(DEFAULTS, bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match=r"list\.yaml: expected a mapping of config keys"):
        load_config(DEFAULTS, listed)
    typo = tmp_path / "typo.yaml"
    typo.write_text("lora:\n  alpah: 2\n")
    with pytest.raises(UserError, match=r"typo\.yaml: unknown key 'lora\.alpah'; known keys: alpha, rank"):
        load_config(DEFAULTS, typo)


def test_override_parsing():
    assert parse_override("a.b.c=[1, 2]") == {"a": {"b": {"c": [1, 2]}}}
    assert parse_override("a=") == {"a": None}
    assert parse_override("a=x=y") == {"a": "x=y"}
    assert overridden_keys(["a.b=1", " c = 2"]) == {"a.b", "c"}
