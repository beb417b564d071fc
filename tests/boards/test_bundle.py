"""Bundles: contents, hashes, reproducibility, atomic output, the aarch64 offline install check."""

import hashlib
import json
import subprocess
import sys
import tarfile

import pytest
from click.testing import CliRunner

from partnner_tf.boards import get_board
from partnner_tf.boards.bundle import make_bundle
from partnner_tf.boards.cli import board as board_cli
from partnner_tf.boards.wheels import _isolated_env, build_wheel, edge_requirements, source_root
from partnner_tf.errors import BoardFitError, PartnnerError, UnknownBoardError
from partnner_tf.manifest import load_manifest, manifest_from_dict

HEAVY = ("tensorflow", "tf_keras", "keras", "jax")


def _members(path):
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: (m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()}


def test_bundle_contents(x86_bundle, tiny_out):
    members = _members(x86_bundle.path)
    top = "partnner-tiny_chain-generic-x86_64"
    names = set(members)
    for rel in ("install.sh", "run.sh", "SHA256SUMS", "config.json", "bundle.env", "model/manifest.json",
                "partnner-edge.service.in"):
        assert f"{top}/{rel}" in names, rel
    m = load_manifest(tiny_out)
    for cut in m.cuts:
        if cut.prefix:
            assert members[f"{top}/model/{cut.prefix}"][1] == m.path(cut.prefix).read_bytes()
    assert f"{top}/model/{m.model_file}" not in names  # the Keras model stays in the cloud
    wheels = [n.rsplit("/", 1)[1] for n in names if n.startswith(f"{top}/wheels/") and n.endswith(".whl")]
    assert any(w.startswith("partnner_tf-") for w in wheels)
    for dep in ("ai_edge_litert-2.3.0", "numpy-", "pyzmq-", "click-", "pillow-"):
        assert any(w.startswith(dep) for w in wheels), dep
    assert not any(w.lower().startswith(HEAVY) for w in wheels)
    assert all(w.endswith(("x86_64.whl", "-none-any.whl", "abi3-manylinux2014_x86_64.whl")) for w in wheels)
    config = json.loads(members[f"{top}/config.json"][1])
    assert config["policy"] == "fixed:2" and config["cloud"] == "tcp://127.0.0.1:7777"
    assert config["board"] == "generic-x86_64" and config["cuts"] == [c.id for c in m.cuts]
    run = members[f"{top}/run.sh"][1].decode()
    assert "edge run" in run and "--policy fixed:2" in run and "--board generic-x86_64" in run
    # The bundled manifest is the converted one (same cut ids as the cloud's) plus the bundle's cuts.
    bm = json.loads(members[f"{top}/model/manifest.json"][1])
    assert manifest_from_dict(bm).cuts == m.cuts and bm["bundle"]["cuts"] == config["cuts"]
    info = members[f"{top}/install.sh"][0]
    assert info.mode == 0o755 and info.uid == 0 and info.gid == 0


def test_sha256sums_cover_every_file(x86_bundle):
    members = _members(x86_bundle.path)
    top = next(iter(members)).split("/")[0]
    sums = dict(
        reversed(line.split("  ", 1)) for line in members[f"{top}/SHA256SUMS"][1].decode().splitlines()
    )
    files = {n[len(top) + 1:]: data for n, (info, data) in members.items() if info.isfile()}
    assert set(sums) == set(files) - {"SHA256SUMS"}
    for rel, digest in sums.items():
        assert hashlib.sha256(files[rel]).hexdigest() == digest, rel


def test_install_refuses_a_corrupt_bundle(x86_bundle, tmp_path):
    with tarfile.open(x86_bundle.path, "r:gz") as tar:
        tar.extractall(tmp_path, filter="tar")
    (top,) = tmp_path.iterdir()
    prefix = sorted((top / "model" / "prefixes").iterdir())[0]
    data = bytearray(prefix.read_bytes())
    data[len(data) // 2] ^= 0xFF
    prefix.write_bytes(bytes(data))
    proc = subprocess.run(["sh", str(top / "install.sh"), "--no-service"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0
    assert "SHA256SUMS" in proc.stderr and not (top / "venv").exists()


def test_bundles_are_reproducible(x86_bundle, tiny_out, built_wheel, wheel_cache, tmp_path, monkeypatch):
    # The same arguments as the x86_bundle fixture: the same bytes.
    args = dict(policy="fixed:2", cloud="tcp://127.0.0.1:7777", wheel=built_wheel, cache=wheel_cache)
    b = make_bundle(tiny_out, "generic-x86_64", tmp_path / "b.tar.gz", **args)
    assert b.sha256 == x86_bundle.sha256 and b.path.read_bytes() == x86_bundle.path.read_bytes()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    c = make_bundle(tiny_out, "generic-x86_64", tmp_path / "c.tar.gz", **args)
    assert c.sha256 != b.sha256
    assert {m[0].mtime for m in _members(c.path).values()} == {1700000000}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar.gz", "c.tar.gz"]  # no temp file left


def test_wheel_build_is_reproducible(tmp_path):
    import shutil

    root = source_root()
    if root is None:
        pytest.skip("partnner-tf is not installed from a source tree")
    # A frozen copy: other work in the checkout must not change the bytes between the two builds.
    src = tmp_path / "src"
    shutil.copytree(root, src, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info",
                                                              "build", "tests", "benchmarks", "docs"))
    a = build_wheel(tmp_path / "a", root=src)
    b = build_wheel(tmp_path / "b", root=src)
    assert a.read_bytes() == b.read_bytes()
    reqs = edge_requirements(a)
    assert any(r.startswith("ai-edge-litert") for r in reqs)
    assert not any(r.lower().startswith(HEAVY) for r in reqs)


def test_raspberry_pi_bundle_holds_aarch64_wheels_and_installs_offline(tiny_out, built_wheel, wheel_cache,
                                                                        tmp_path):
    rpi = get_board("rpi4")
    r = make_bundle(tiny_out, rpi, tmp_path / "rpi4.tar.gz", policy="edge", wheel=built_wheel, cache=wheel_cache)
    with tarfile.open(r.path, "r:gz") as tar:
        tar.extractall(tmp_path / "x", filter="tar")
    wheels = tmp_path / "x" / "partnner-tiny_chain-rpi4" / "wheels"
    names = sorted(p.name for p in wheels.iterdir())
    binary = [n for n in names if not n.endswith("-none-any.whl")]
    assert binary and all("aarch64" in n for n in binary), binary
    assert any(n.startswith("ai_edge_litert-2.3.0-cp311") for n in names)
    # pip itself checks that the wheel folder alone satisfies partnner-tf[edge] on the Pi's platform.
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--find-links", str(wheels),
           "--only-binary=:all:", "--python-version", rpi.python, "--implementation", "cp",
           "--target", str(tmp_path / "target"), "--report", str(tmp_path / "report.json")]
    for tag in rpi.pip_platforms:
        cmd += ["--platform", tag]
    proc = subprocess.run(cmd + ["partnner-tf[edge]"], capture_output=True, text=True, env=_isolated_env(),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    installed = {i["metadata"]["name"].lower() for i in json.loads((tmp_path / "report.json").read_text())["install"]}
    assert {"partnner-tf", "ai-edge-litert", "numpy", "pyzmq", "click", "pillow"} <= installed
    assert not any(n.startswith(HEAVY) for n in installed)


def test_bad_inputs(tiny_out, built_wheel, wheel_cache, tmp_path):
    args = dict(wheel=built_wheel, cache=wheel_cache, policy="edge")
    with pytest.raises(UnknownBoardError, match="known boards"):
        make_bundle(tiny_out, "rpi9", tmp_path / "x.tar.gz", **args)
    with pytest.raises(PartnnerError, match="tar.gz"):
        make_bundle(tiny_out, "rpi4", tmp_path / "x.zip", **args)
    with pytest.raises(PartnnerError, match="policy"):
        make_bundle(tiny_out, "rpi4", tmp_path / "x.tar.gz", wheel=built_wheel, cache=wheel_cache,
                    policy="bogus")
    with pytest.raises(PartnnerError, match="client.key_secret"):
        make_bundle(tiny_out, "rpi4", tmp_path / "x.tar.gz", curve_keys=tmp_path, **args)
    with pytest.raises(BoardFitError, match="Python 3.7"):
        make_bundle(tiny_out, "coral-dev-board", tmp_path / "x.tar.gz", **args)
    with pytest.raises(BoardFitError, match="cache"):
        make_bundle(tiny_out, "rpi4", tmp_path / "x.tar.gz", offline=True, wheel=built_wheel,
                    cache=tmp_path / "empty-cache", policy="edge")
    assert list(tmp_path.glob("*.tar.gz")) == [] and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_altered_prefix_is_not_bundled(tiny_out, built_wheel, wheel_cache, tmp_path):
    import shutil

    from partnner_tf.errors import ManifestError

    out = tmp_path / "out"
    shutil.copytree(tiny_out, out)
    m = load_manifest(out)
    p = m.path(m.cuts[1].prefix)
    p.write_bytes(p.read_bytes()[:-8])
    with pytest.raises(ManifestError, match="sha256"):
        make_bundle(out, "rpi4", tmp_path / "x.tar.gz", policy="edge", wheel=built_wheel, cache=wheel_cache)
    assert not (tmp_path / "x.tar.gz").exists()


def test_cli_bundle_with_curve_keys(tiny_out, built_wheel, wheel_cache, tmp_path):
    from partnner_tf.runtime.cloud.security import generate_keys

    generate_keys(tmp_path / "keys")
    out = tmp_path / "b.tar.gz"
    r = CliRunner().invoke(board_cli, ["bundle", str(tiny_out), "--board", "generic-aarch64", "-o", str(out),
                                       "--policy", "cloud", "--curve-keys", str(tmp_path / "keys"),
                                       "--wheel", str(built_wheel), "--wheel-cache", str(wheel_cache)])
    assert r.exit_code == 0, r.output
    assert "sha256" in r.output
    members = _members(out)
    top = "partnner-tiny_chain-generic-aarch64"
    assert members[f"{top}/keys/client.key_secret"][0].mode == 0o600
    assert members[f"{top}/keys/server.key"][1] == (tmp_path / "keys" / "server.key").read_bytes()
    assert json.loads(members[f"{top}/config.json"][1])["curve"]["server_key"] == "keys/server.key"


def test_systemd_unit_verifies(x86_bundle, tmp_path):
    import shutil

    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    with tarfile.open(x86_bundle.path, "r:gz") as tar:
        tar.extractall(tmp_path, filter="tar")
    (top,) = tmp_path.iterdir()
    # What install.sh does with the template.
    unit = (top / "partnner-edge.service.in").read_text().replace("@DIR@", str(top)).replace("@USER@", "root")
    assert "@" not in unit
    (tmp_path / "partnner-edge.service").write_text(unit)
    proc = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "partnner-edge.service")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"ExecStart={top}/run.sh" in unit
