"""`partnner bench` and `partnner demo` through click's CliRunner: help, and clean errors."""

from click.testing import CliRunner

from partnner_tf.cli import cli


def test_help_of_bench_and_demo():
    runner = CliRunner()
    for cmd in ("bench", "demo"):
        res = runner.invoke(cli, [cmd, "--help"])
        assert res.exit_code == 0, res.output
        assert "--out" in res.output


def test_bench_names_a_bad_model_folder(tmp_path):
    res = CliRunner().invoke(cli, ["bench", "--model", str(tmp_path / "nothing.keras"), "-o", str(tmp_path / "o"),
                                   "--link", "wifi"])
    assert res.exit_code != 0
    assert "nothing.keras" in str(res.exception) + res.output
