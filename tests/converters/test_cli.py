"""The convert and inspect commands, through click's CliRunner and as a TensorFlow-free process."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from partnner_tf.cli import cli
from partnner_tf.manifest import load_manifest, manifest_from_dict, write_json_atomic
from tests.models import get_model


@pytest.mark.parametrize("command", ["convert", "inspect"])
def test_help(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: cli " + command in result.output or f"{command} [OPTIONS]" in result.output
    if command == "convert":
        for opt in ("--input-shape", "--cuts", "--quantize", "--calibration", "--jobs", "-o, --out"):
            assert opt in result.output


def test_convert_then_inspect(tmp_path):
    get_model("chain").save(tmp_path / "chain.keras")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["convert", str(tmp_path / "chain.keras"), "-o", str(out), "--cuts", "conv2,gap",
              "--no-cache", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "edge side" in result.output
    result = CliRunner().invoke(cli, ["inspect", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].split()[:3] == ["id", "layer", "boundary"]
    assert [ln.split()[1] for ln in lines[3:5]] == ["conv2", "gap"]
    assert "(edge only)" in lines[5] and "(input: cloud only)" in lines[2]
    raw = json.loads(CliRunner().invoke(cli, ["inspect", str(out), "--json"]).output)
    assert raw["format"] == "partnner-manifest"


def test_convert_error_is_one_clean_line(tmp_path):
    result = CliRunner().invoke(cli, ["convert", str(tmp_path / "nope.keras"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "Error: model file" in result.output and "does not exist" in result.output
    assert "Traceback" not in result.output


def test_inspect_bad_folder(tmp_path):
    result = CliRunner().invoke(cli, ["inspect", str(tmp_path)])
    assert result.exit_code == 1 and "cannot read manifest" in result.output


def test_manifest_with_only_required_fields_loads_and_inspects(tmp_path):
    data = {
        "format": "partnner-manifest", "version": 1,
        "model": {"name": "outside", "file": "m.keras",
                  "input": {"name": "x", "shape": [1, 4], "dtype": "float32"}},
        "cuts": [
            {"id": 0, "layers": [], "prefix": None, "boundary_bytes": 16, "prefix_macs": 0, "suffix_macs": 8},
            {"id": 1, "layers": [], "prefix": "p.tflite", "boundary_bytes": 0, "prefix_macs": 8, "suffix_macs": 0},
        ],
    }
    write_json_atomic(tmp_path / "manifest.json", data)
    m = load_manifest(tmp_path)
    assert m.cloud_only == 0 and m.edge_only == 1
    result = CliRunner().invoke(cli, ["inspect", str(tmp_path)])
    assert result.exit_code == 0 and "(edge only)" in result.output


def test_manifest_round_trip(converted_tiny, tmp_path):
    out = converted_tiny("residual")
    m = load_manifest(out)
    again = manifest_from_dict(json.loads(json.dumps(m.raw)), root=out)
    assert again == m
    write_json_atomic(tmp_path / "manifest.json", m.raw)
    assert load_manifest(tmp_path).cuts == m.cuts


def test_inspect_runs_without_tensorflow(converted_tiny):
    out = converted_tiny("chain")
    # Make tensorflow and keras unimportable: inspect must not need them.
    code = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "from partnner_tf.cli import main\n"
        f"main(['inspect', {str(out)!r}])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "(edge only)" in proc.stdout
