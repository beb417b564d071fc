"""The board registry: every required board, its fields, unknown names, the list/show CLI."""

import dataclasses
import json

import pytest
from click.testing import CliRunner

from partnner_tf.boards import get_board, list_boards, register_board
from partnner_tf.boards.cli import board as board_cli
from partnner_tf.errors import UnknownBoardError

REQUIRED = ["rpi3b", "rpi4", "rpi5", "coral-dev-board", "coral-usb", "jetson-nano", "generic-x86_64", "generic-aarch64"]


def test_required_boards_registered():
    names = [b.name for b in list_boards()]
    assert set(REQUIRED) <= set(names)
    assert names == sorted(names)


@pytest.mark.parametrize("name", REQUIRED)
def test_board_fields(name):
    b = get_board(name)
    assert b.arch in ("aarch64", "x86_64")
    assert len(b.python.split(".")) == 2 and len(b.glibc.split(".")) == 2
    assert len(b.interpreter) == 2 and all(b.interpreter)
    assert b.threads >= 1 and b.memory_mb > 0 and b.storage_mb > 0
    assert set(b.emulation) == {"cpus", "quota"}
    assert isinstance(b.emulation["cpus"], int) and 0 < b.emulation["quota"] <= 1
    if b.accelerator == "edgetpu":
        assert b.quantization == "int8" and b.delegate == "libedgetpu.so.1"
    d = b.to_dict()
    assert json.loads(json.dumps(d))["name"] == name


def test_raspberry_pi_is_bookworm_aarch64():
    for name in ("rpi3b", "rpi4", "rpi5"):
        b = get_board(name)
        assert (b.arch, b.python, b.glibc) == ("aarch64", "3.11", "2.36")
        assert b.pip_platforms[0] == "manylinux_2_36_aarch64"
        assert "manylinux_2_27_aarch64" in b.pip_platforms  # ai-edge-litert's aarch64 tag
        assert b.pip_platforms[-1] == "manylinux2014_aarch64"


def test_unknown_board_lists_known_ones():
    with pytest.raises(UnknownBoardError) as exc:
        get_board("raspberry-pi-9")
    msg = str(exc.value)
    assert "raspberry-pi-9" in msg
    for name in REQUIRED:
        assert name in msg


def test_get_board_passes_records_through_and_register_refuses_duplicates():
    b = get_board("rpi4")
    assert get_board(b) is b
    with pytest.raises(ValueError, match="already registered"):
        register_board(b)
    with pytest.raises(TypeError):
        register_board({"name": "x"})
    small = dataclasses.replace(b, name="rpi4-small", memory_mb=100)
    assert small.name != b.name and b.memory_mb == 1024


def test_cli_list_show_and_help():
    runner = CliRunner()
    r = runner.invoke(board_cli, ["list"])
    assert r.exit_code == 0 and all(n in r.output for n in REQUIRED)
    r = runner.invoke(board_cli, ["show", "coral-usb"])
    assert r.exit_code == 0 and "libedgetpu.so.1" in r.output and "int8" in r.output
    r = runner.invoke(board_cli, ["show", "rpi5", "--json"])
    assert json.loads(r.output)["emulation"]["cpus"] == 2
    r = runner.invoke(board_cli, ["show", "nope"])
    assert r.exit_code != 0 and isinstance(r.exception, UnknownBoardError)
    for cmd in ([], ["list"], ["show"], ["fit"], ["bundle"], ["flash"]):
        r = runner.invoke(board_cli, cmd + ["--help"])
        assert r.exit_code == 0 and "Usage" in r.output


def test_partnner_cli_maps_board_group():
    from partnner_tf.cli import cli

    r = CliRunner().invoke(cli, ["board", "show", "nope"])
    assert r.exit_code != 0
    r = CliRunner().invoke(cli, ["board", "list"])
    assert r.exit_code == 0 and "rpi4" in r.output
