"""Fit: memory, storage, accelerator quantization and platform checks on a real converted model."""

import dataclasses

import pytest
from click.testing import CliRunner

from partnner_tf.boards import get_board
from partnner_tf.boards.cli import board as board_cli
from partnner_tf.boards.fit import RUNTIME_BASE_MB, fit_model, prefix_stats
from partnner_tf.errors import BoardFitError, UnknownBoardError
from partnner_tf.manifest import load_manifest


def test_every_cut_fits_a_generic_host(tiny_out):
    report = fit_model(tiny_out, "generic-x86_64").check()
    m = load_manifest(tiny_out)
    assert report.fitting == [c.id for c in m.cuts]
    assert report.edge_cuts == [c.id for c in m.cuts if c.prefix is not None]
    assert all(c.memory_mb >= RUNTIME_BASE_MB and not c.reasons for c in report.cuts)


def test_prefix_stats_reads_the_flatbuffer(tiny_out):
    m = load_manifest(tiny_out)
    edge = m.cuts[m.edge_only]
    s = prefix_stats(m.path(edge.prefix))
    assert s.file_bytes == m.path(edge.prefix).stat().st_size
    # The arena holds at least the input frame and the first conv's output at once.
    first = m.cuts[1].boundary[0]
    assert s.arena_bytes >= m.input.nbytes + first.nbytes
    assert s.input_dtypes == ("float32",) and not s.full_int8


def test_memory_budget_excludes_cuts_and_refuses_the_model(tiny_out):
    tiny_board = dataclasses.replace(get_board("rpi3b"), name="rpi3b-starved", memory_mb=RUNTIME_BASE_MB)
    report = fit_model(tiny_out, tiny_board)
    assert report.edge_cuts == []
    assert all("memory" in " ".join(c.reasons) for c in report.cuts[1:])
    with pytest.raises(BoardFitError, match="no cut with an edge prefix fits.*memory"):
        report.check()


def test_storage_budget(tiny_out):
    b = dataclasses.replace(get_board("rpi4"), name="rpi4-nodisk", storage_mb=10)
    report = fit_model(tiny_out, b)
    assert not report.edge_cuts and "storage" in report.cuts[-1].reasons[0]


def test_edgetpu_needs_full_int8(tiny_out):
    report = fit_model(tiny_out, "coral-usb")
    assert report.edge_cuts  # float prefixes still run on the host CPU
    assert all(c.accelerated is False for c in report.cuts[1:])
    assert "full int8" in report.cuts[1].reasons[0]
    strict = fit_model(tiny_out, "coral-usb", require_accelerator=True)
    with pytest.raises(BoardFitError, match="full int8"):
        strict.check()


@pytest.mark.parametrize("name,why", [("coral-dev-board", "Python 3.7"), ("jetson-nano", "Python 3.6")])
def test_boards_whose_python_is_too_old_are_refused(tiny_out, name, why):
    with pytest.raises(BoardFitError, match=why):
        fit_model(tiny_out, name).check()


def test_bad_inputs(tiny_out, tmp_path):
    with pytest.raises(UnknownBoardError):
        fit_model(tiny_out, "no-such-board")
    from partnner_tf.errors import ManifestError

    with pytest.raises(ManifestError):
        fit_model(tmp_path, "rpi4")


def test_cli_fit_table(tiny_out):
    runner = CliRunner()
    r = runner.invoke(board_cli, ["fit", str(tiny_out), "--board", "rpi4"])
    assert r.exit_code == 0, r.output
    layer = load_manifest(tiny_out).cuts[1].layers[0]
    assert "edge cuts fit" in r.output and layer[:28] in r.output
    r = runner.invoke(board_cli, ["fit", str(tiny_out), "--board", "jetson-nano"])
    assert r.exit_code != 0 and "platform:" in r.output
    assert isinstance(r.exception, BoardFitError)
