"""``partnner bench`` and ``partnner demo``: the testbed's commands."""

import subprocess
from pathlib import Path

import click

from partnner_tf.errors import PartnnerError
from partnner_tf.testbed import procs


def ensure_converted(model, input_shape, dest, progress=click.echo):
    """A converted model folder: ``model`` itself if it holds a manifest, else converted into ``dest``."""
    if (Path(model) / "manifest.json").exists():
        return Path(model)
    dest = Path(dest)
    if (dest / "manifest.json").exists():
        return dest
    if not str(model).startswith("keras.applications.") and not Path(model).exists():
        raise PartnnerError(f"model {model}: expected a converted folder (with manifest.json), a model file "
                            "or keras.applications.NAME; received a path that does not exist")
    progress(f"converting {model} ({input_shape or 'default shape'}) into {dest} ...")
    cmd = procs.python_cmd("partnner_tf.cli", "convert", model, "-o", dest, "--no-progress")
    if input_shape:
        cmd += ["--input-shape", input_shape]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise PartnnerError(f"converting {model} failed: {res.stderr.strip()[-1500:]}")
    return dest


#: How the edge process is made as slow as its board (bench and demo alike).
board_mode_option = click.option(
    "--board-mode", type=click.Choice(["dilate", "dilate-all", "cgroup"]), default="dilate", show_default=True,
    help="dilate: each prefix run stretched to the board's speed (no root); dilate-all: the rest of each "
         "frame's work in the edge process too; cgroup: a CFS CPU quota (root).")


@click.command()
@click.option("--model", "models", multiple=True, required=True,
              help="A converted folder, or keras.applications.NAME (converted into OUT/models). Repeatable.")
@click.option("--input-shape", help="H,W,C for keras.applications models.")
@click.option("--board", "boards", multiple=True, default=("rpi4",), show_default=True, help="Repeatable.")
@click.option("--link", "links", multiple=True, default=("wifi", "lte"), show_default=True,
              help="wifi, lte, lte-driving, 3g, lte-drop, or UP|DOWN|DELAY_MS. Repeatable.")
@click.option("--policies", default="edge,cloud,neurosurgeon,partnner,best-fixed", show_default=True)
@click.option("--frames", type=click.IntRange(min=2), default=40, show_default=True, help="Frames per run.")
@click.option("--load", help="Cloud load: concurrent clients from time T, e.g. 0=0,10=2,20=0.")
@click.option("--fixed-top", type=click.IntRange(min=0), default=2, show_default=True,
              help="Middle cuts tried for the best fixed cut (ranked by the board's profile).")
@click.option("--max-run-s", type=click.FloatRange(min=0), default=0.0,
              help="Stop each run after this many seconds (0: run every frame).")
@click.option("--link-mode", type=click.Choice(["relay", "tc"]), default="relay", show_default=True,
              help="relay: user-space trace relay (no root); tc: namespace + veth shaped by tbf (root).")
@board_mode_option
@click.option("--turns/--one-by-one", default=True, show_default=True,
              help="Run a cell's policies side by side, a few frames each in turn, so the host's speed drift "
                   "falls on all alike (relay links without --load), or one after the other.")
@click.option("--no-sim", is_flag=True, help="Skip the partnner sim comparison.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default="out/bench", show_default=True)
def bench(models, input_shape, boards, links, policies, frames, load, fixed_top, max_run_s, link_mode, board_mode,
          turns, no_sim, out_dir):
    """Run models x boards x links x policies with real processes; write logs, CSV, table and plots."""
    from partnner_tf.testbed.bench import run_matrix
    from partnner_tf.testbed.report import write_all

    procs.install_handlers()
    out = Path(out_dir)
    outs = [ensure_converted(m, input_shape, out / "models" / m.split(".")[-1]) for m in models]
    cells = run_matrix(outs, list(boards), list(links), policies=[p.strip() for p in policies.split(",")],
                       frames=frames, out_dir=out, load=load, fixed_top=fixed_top, sim=not no_sim,
                       max_run_s=max_run_s, link_mode=link_mode, board_mode=board_mode, turns=turns)
    text = write_all(cells, out)
    click.echo(text)
    click.echo(f"results: {out}/table.md, {out}/results.csv, {out}/speedups.png, {out}/cells/*/timeline.png")


@click.command()
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default="demo-out", show_default=True)
@click.option("--frames", type=click.IntRange(min=10), default=100000, show_default=True,
              help="Most frames per policy run (each run also stops after --duration).")
@click.option("--board", default="rpi3b", show_default=True)
@click.option("--input-shape", default="224,224,3", show_default=True)
@click.option("--model", default="keras.applications.MobileNetV2", show_default=True,
              help="A keras.applications name, a model file, or a converted folder.")
@click.option("--duration", "duration_s", type=click.FloatRange(min=5), default=48.0, show_default=True,
              help="Seconds per policy run (the link and load schedules span 48 s).")
@board_mode_option
def demo(out_dir, frames, board, input_shape, model, duration_s, board_mode):
    """MobileNetV2 over an emulated LTE link that drops and recovers, a cloud whose load steps: watch the cut move."""
    from partnner_tf.testbed.demo import run_demo

    procs.install_handlers()
    run_demo(Path(out_dir), frames=frames, board=board, input_shape=input_shape, model=model, duration_s=duration_s,
             board_mode=board_mode)
