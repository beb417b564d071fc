"""``partnner board``: list and show boards, fit a model, bundle it, flash a bundle over SSH."""

import json

import click

from partnner_tf.constants import ENV_ENDPOINT


@click.group()
def board():
    """Target boards: profiles, what fits, offline bundles and flashing over SSH."""


@board.command("list")
def list_cmd():
    """List the known boards."""
    from partnner_tf.boards import list_boards

    click.echo(f"{'name':<16} {'arch':<8} {'python':<6} {'accel':<8} {'mem MB':>6} {'disk MB':>7}  title")
    for b in list_boards():
        click.echo(
            f"{b.name:<16} {b.arch:<8} {b.python:<6} {b.accelerator or '-':<8} "
            f"{b.memory_mb:>6} {b.storage_mb:>7}  {b.title}"
        )


@board.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
def show(name, as_json):
    """Show the record of board NAME."""
    from partnner_tf.boards import get_board

    d = get_board(name).to_dict()
    if as_json:
        click.echo(json.dumps(d, indent=1))
        return
    for key, value in d.items():
        if key == "pip_platforms":
            value = f"{value[0]} ... {value[-1]} ({len(value)} tags)" if value else "none"
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        click.echo(f"{key:<14} {value if value not in (None, '') else '-'}")


@board.command()
@click.argument("out", type=click.Path(exists=True))
@click.option("--board", "board_name", required=True, help="Board name (see `partnner board list`).")
@click.option("--require-accelerator", is_flag=True, help="Cuts the accelerator cannot run do not fit.")
def fit(out, board_name, require_accelerator):
    """Which cuts of the model converted in OUT can run on a board, and why not."""
    from partnner_tf.boards.fit import fit_model

    report = fit_model(out, board_name, require_accelerator=require_accelerator)
    click.echo(f"model {report.manifest.name} on {report.board.name} "
               f"(memory {report.board.memory_mb} MB, storage {report.board.storage_mb} MB)")
    click.echo(f"{'cut':>4} {'layer':<28} {'fits':<4} {'mem MB':>7} {'disk MB':>8}  notes")
    for c in report.cuts:
        click.echo(f"{c.cut:>4} {c.layer[:28]:<28} {'yes' if c.fits else 'NO':<4} "
                   f"{c.memory_mb:>7.1f} {c.storage_mb:>8.1f}  {'; '.join(c.reasons)}")
    for p in report.platform_problems:
        click.echo(f"platform: {p}")
    report.check()
    click.echo(f"{len(report.edge_cuts)} of {len(report.cuts) - 1} edge cuts fit; "
               f"all of them loaded at once: {report.all_loaded_mb:.0f} MB")


@board.command()
@click.argument("out", type=click.Path(exists=True))
@click.option("--board", "board_name", required=True, help="Board name (see `partnner board list`).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="FILE.tar.gz to write.")
@click.option("--cloud", envvar=ENV_ENDPOINT, help="Cloud endpoint the service connects to.")
@click.option("--policy", default="partnner", show_default=True, help="The service's cut policy.")
@click.option("--curve-keys", type=click.Path(exists=True, file_okay=False),
              help="Folder from `partnner keys generate` (server.key, client.key, client.key_secret).")
@click.option("--source", default="random", show_default=True, help="The service's frame source on the board.")
@click.option("--frames", default=1_000_000, show_default=True, type=click.IntRange(min=1),
              help="Frames per run of the service (systemd restarts it after each run).")
@click.option("--wheel", type=click.Path(exists=True, dir_okay=False),
              help="A built partnner-tf wheel (default: build one from the source tree).")
@click.option("--wheel-cache", type=click.Path(file_okay=False), help="Wheel cache (default ~/.cache/partnner-tf/wheels).")
@click.option("--offline", is_flag=True, help="Never download: use the wheel cache only.")
@click.option("--edgetpu/--no-edgetpu", default=None,
              help="Full-int8 Edge TPU prefixes (default: when the board has an Edge TPU).")
@click.option("--calibration", type=click.Path(exists=True, file_okay=False),
              help="Images or .npy frames calibrating the Edge TPU's int8 prefixes.")
def bundle(out, board_name, output, cloud, policy, curve_keys, source, frames, wheel, wheel_cache, offline,
           edgetpu, calibration):
    """Bundle the model converted in OUT for a board: wheels, prefixes, config, install.sh, unit."""
    from partnner_tf.boards.bundle import make_bundle
    from partnner_tf.boards.registry import get_board

    b = get_board(board_name)
    if edgetpu is None:
        edgetpu = b.accelerator == "edgetpu"
    r = make_bundle(out, b, output, cloud=cloud, policy=policy, curve_keys=curve_keys, source=source,
                    frames=frames, cache=wheel_cache, wheel=wheel, offline=offline, edgetpu=edgetpu,
                    calibration=calibration)
    for note in r.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"{r.path}: {r.bytes / 1e6:.1f} MB, sha256 {r.sha256}")
    click.echo(f"board {r.board}: cuts {r.cuts}, {len(r.wheels)} wheels")


@board.command()
@click.argument("bundle_file", metavar="FILE.tar.gz", type=click.Path(exists=True, dir_okay=False))
@click.option("--host", required=True, help="USER@HOST to flash.")
@click.option("--port", default=22, show_default=True, type=click.IntRange(1, 65535))
@click.option("--identity", type=click.Path(exists=True, dir_okay=False), help="SSH private key.")
@click.option("--remote-dir", default="partnner", show_default=True, help="Folder on the host (relative: in the home).")
@click.option("-o", "--ssh-option", "ssh_options", multiple=True, help="Extra ssh -o option, e.g. UserKnownHostsFile=F.")
@click.option("--log-wait", default=5.0, show_default=True, help="Seconds to let the service run before reading its log.")
@click.option("--dry-run", is_flag=True, help="Print the commands, run nothing.")
def flash(bundle_file, host, port, identity, remote_dir, ssh_options, log_wait, dry_run):
    """Copy FILE.tar.gz to a host over SSH, install it, start its service, show its first log lines."""
    import shlex

    from partnner_tf.boards.flash import Target, flash as do_flash, flash_commands

    target = Target.parse(host, port=port, identity=identity, options=ssh_options)
    if dry_run:
        for step, argv, stdin in flash_commands(bundle_file, target, remote_dir, log_wait):
            click.echo(f"# {step}")
            click.echo(" ".join(shlex.quote(a) for a in argv) + (" <<'EOF'" if stdin else ""))
            if stdin:
                click.echo(stdin + "EOF")
        return
    r = do_flash(bundle_file, target, remote_dir, log_wait)
    how = "systemd unit partnner-edge.service" if r.mode == "systemd" else (
        f"no systemd on the host: started with nohup, pid {r.pid} (stop it with kill {r.pid})")
    click.echo(f"flashed {r.host}:{r.remote_dir}; service: {how}")
    click.echo(f"first log lines ({r.frames_logged} frames logged so far):")
    for line in r.log_lines:
        click.echo(f"  {line}")
