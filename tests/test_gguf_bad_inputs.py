"""Bad GGUF inputs: another architecture, an unsupported tensor type, a truncated file, not a
GGUF at all. Each is a UserError naming the problem, and nothing is left in the output folder."""

import pytest

from gguf_fixtures import write_tiny_gguf
from petool_jax.errors import UserError
from petool_jax.gguf_convert import convert_gguf_checkpoint


def _convert_fails(src, out_parent, match):
    out = out_parent / "out"
    with pytest.raises(UserError, match=match):
        convert_gguf_checkpoint(src, out, progress=False)
    assert not out.exists()
    assert [p.name for p in out_parent.iterdir()] == []  # no half-written temporary directory


def test_other_architecture(tmp_path):
    src = tmp_path / "qwen.gguf"
    write_tiny_gguf(src, tied=True, arch="qwen2", num_layers=1)
    (tmp_path / "o").mkdir()
    _convert_fails(src, tmp_path / "o", r"GGUF architecture 'qwen2' is not supported")


def test_unsupported_tensor_type(tmp_path):
    src = tmp_path / "f64.gguf"
    write_tiny_gguf(src, tied=True, norm_type="F64", num_layers=1)
    (tmp_path / "o").mkdir()
    _convert_fails(src, tmp_path / "o", r"unsupported tensor type\(s\): \['blk\.0\.attn_norm\.weight \(F64\)'")


@pytest.mark.parametrize("keep", [0.5, 0.999, 0.01])
def test_truncated_file(tmp_path, keep):
    src = tmp_path / "tiny.gguf"
    write_tiny_gguf(src, tied=False, num_layers=1)
    data = src.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:int(len(data) * keep)])
    (tmp_path / "o").mkdir()
    _convert_fails(cut, tmp_path / "o", r"cut\.gguf: (truncated|not a readable GGUF file)")


def test_not_a_gguf_and_missing_file(tmp_path):
    (tmp_path / "o").mkdir()
    bogus = tmp_path / "model.gguf"
    bogus.write_text("this is not a GGUF file at all, just text" * 10)
    _convert_fails(bogus, tmp_path / "o", r"model\.gguf: not a readable GGUF file")
    _convert_fails(tmp_path / "absent.gguf", tmp_path / "o", r"absent\.gguf: no such GGUF file")


def test_cli_prints_the_error(tmp_path, capsys):
    from petool_jax.app.cli import main as petool

    src = tmp_path / "qwen.gguf"
    write_tiny_gguf(src, tied=True, arch="qwen2", num_layers=1)
    assert petool(["convert", "--gguf", str(src), "--out", str(tmp_path / "out")]) == 2
    assert "architecture 'qwen2' is not supported" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
