"""Flash over a real OpenSSH server on loopback: dry run, errors, and the full install-and-serve path."""

import json
import os
import signal
import subprocess
import tarfile
import time

import numpy as np
import pytest
from click.testing import CliRunner

from partnner_tf.boards.bundle import make_bundle
from partnner_tf.boards.cli import board as board_cli
from partnner_tf.boards.flash import FlashError, Target, flash, flash_commands
from partnner_tf.manifest import load_manifest


def _target(sshd, key=None):
    return Target.parse(f"{sshd['user']}@127.0.0.1", port=sshd["port"], identity=key or sshd["key"],
                        options=sshd["options"])


def test_dry_run_prints_commands_and_runs_nothing(x86_bundle, tmp_path):
    key = tmp_path / "id"
    key.write_text("not used")
    r = CliRunner().invoke(board_cli, ["flash", str(x86_bundle.path), "--host", "pi@192.0.2.1", "--port", "2222",
                                       "--identity", str(key), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "scp" in r.output and "-P 2222" in r.output and "-p 2222" in r.output
    assert f"-i {key}" in r.output and "BatchMode=yes" in r.output
    assert "install.sh" in r.output and "partnner-edge.service" in r.output and "nohup" in r.output


def test_bad_arguments(x86_bundle, tmp_path):
    with pytest.raises(FlashError, match="USER@HOST"):
        Target.parse("raspberrypi")
    with pytest.raises(FlashError, match="no such key"):
        Target.parse("pi@host", identity=str(tmp_path / "missing"))
    bogus = tmp_path / "bogus.tar.gz"
    with tarfile.open(bogus, "w:gz") as tar:
        tar.add(__file__, arcname="a/b.py")
    with pytest.raises(FlashError, match="install.sh"):
        flash_commands(bogus, Target.parse("pi@host"))
    (tmp_path / "junk.tar.gz").write_bytes(b"junk")
    with pytest.raises(FlashError, match="not a readable"):
        flash_commands(tmp_path / "junk.tar.gz", Target.parse("pi@host"))


def test_unreachable_host(sshd, x86_bundle):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = Target.parse(f"{sshd['user']}@127.0.0.1", port=port, identity=sshd["key"], options=sshd["options"])
    with pytest.raises(FlashError, match="cannot be reached"):
        flash(x86_bundle.path, target)


def test_wrong_key_is_refused(sshd, x86_bundle):
    with pytest.raises(FlashError, match="refused the key"):
        flash(x86_bundle.path, _target(sshd, key=sshd["wrong_key"]))
    args = ["flash", str(x86_bundle.path), "--host", f"{sshd['user']}@127.0.0.1", "--port", str(sshd["port"]),
            "--identity", str(sshd["wrong_key"])]
    for opt in sshd["options"]:
        args += ["-o", opt]
    r = CliRunner().invoke(board_cli, args)
    assert r.exit_code != 0 and isinstance(r.exception, FlashError)


def _wait_lines(path, n, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            break
        time.sleep(0.5)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _kill(pid):
    try:
        os.killpg(pid, signal.SIGTERM)  # setsid made the service its own group leader
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pid, signal.SIGTERM)


@pytest.mark.slow
def test_flash_installs_offline_and_serves_against_a_cloud_daemon(sshd, tiny_out, built_wheel, wheel_cache,
                                                                   tmp_path):
    """The done-when check: the x86_64 bundle installs offline over SSH into a fresh venv without
    TensorFlow, and its service runs the edge runtime against a real cloud daemon with correct results."""
    from partnner_tf.runtime.cloud.spawn import start_daemon

    m = load_manifest(tiny_out)
    cut = [c.id for c in m.cuts if c.prefix is not None and not c.is_edge_only][-1]
    frames = 30
    with start_daemon([tiny_out]) as daemon:
        bundle = make_bundle(tiny_out, "generic-x86_64", tmp_path / "tiny.tar.gz", cloud=daemon.endpoint,
                             policy=f"fixed:{cut}", frames=frames, wheel=built_wheel, cache=wheel_cache)
        remote = tmp_path / "remote"
        result = flash(bundle.path, _target(sshd), remote_dir=str(remote), log_wait_s=2)
        try:
            assert result.mode == "nohup" and result.pid  # no systemd in this container
            top = remote / "partnner-tiny_chain-generic-x86_64"
            log = _wait_lines(top / "logs" / "frames.jsonl", frames, timeout_s=90)
            assert len(log) == frames, (top / "logs" / "service.log").read_text()[-2000:]
            assert all(r["cut"] == cut and not r["fallback"] and r["bytes_sent"] > 0 for r in log)
            assert result.log_lines, result.output
            # The installed venv has no TensorFlow; its runtime's outputs equal the full Keras model's.
            py = top / "venv" / "bin" / "python"
            x = np.random.default_rng(0).random((3, *m.input.shape), dtype=np.float32)
            np.save(tmp_path / "x.npy", x)
            script = (
                "import sys, numpy as np\n"
                "from partnner_tf.runtime.edge import EdgeRuntime\n"
                "x = np.load(sys.argv[1]); outs = []\n"
                f"with EdgeRuntime(sys.argv[2], cloud=sys.argv[3], selector='fixed:{cut}') as rt:\n"
                "    for f in x:\n"
                "        r = rt.infer(f); assert r.cut == " + str(cut) + " and not r.fallback, r\n"
                "        outs.append(r.outputs[0])\n"
                "np.save(sys.argv[4], np.stack(outs))\n"
                "assert 'tensorflow' not in sys.modules\n"
                "try:\n    import tensorflow\nexcept ImportError:\n    pass\nelse:\n    sys.exit('tensorflow is installed')\n"
            )
            proc = subprocess.run([str(py), "-c", script, str(tmp_path / "x.npy"), str(top / "model"),
                                   daemon.endpoint, str(tmp_path / "y.npy")],
                                  capture_output=True, text=True, timeout=120, env={"PATH": os.environ["PATH"]},
                                  cwd=tmp_path)  # not the checkout: its partnner_tf/ would shadow the venv's
            assert proc.returncode == 0, proc.stderr[-2000:]
        finally:
            if result.pid:
                _kill(result.pid)
    import keras

    model = keras.saving.load_model(m.path(m.model_file), compile=False)
    want = np.concatenate([np.asarray(model(f)) for f in x])
    got = np.load(tmp_path / "y.npy").reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
