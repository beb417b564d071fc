"""``partnner sim``: replay a world for several policies; CSV, table and plot."""

from pathlib import Path

import click

from partnner_tf.errors import PartnnerError


def _uplink(trace, trace_scale, bandwidth, bandwidth_steps):
    from partnner_tf.sim_world import parse_steps
    from partnner_tf.traces import constant, load_trace, steps

    given = [x for x in (trace, bandwidth, bandwidth_steps) if x is not None]
    if len(given) > 1:
        raise click.UsageError("give one of --trace, --bandwidth, --bandwidth-steps")
    if trace is not None:
        return load_trace(trace, scale=trace_scale)
    if bandwidth_steps is not None:
        return steps([(t, v * 1e6) for t, v in parse_steps(bandwidth_steps, "--bandwidth-steps")])
    return constant((bandwidth if bandwidth is not None else 10.0) * 1e6)


@click.command("sim")
@click.option("--profile", "profile_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Profile JSON (partnner profile). Without one, a synthetic profile is made from the "
                   "manifest's MACs (--manifest) or a synthetic model (--synthetic N).")
@click.option("--manifest", type=click.Path(exists=True), default=None,
              help="The model's manifest (default: the cut table inside the profile).")
@click.option("--synthetic", type=click.IntRange(min=2), default=None, help="A synthetic model with N cuts.")
@click.option("--save-profile", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the (synthetic) profile used.")
@click.option("--trace", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Mahimahi uplink trace.")
@click.option("--trace-scale", type=float, default=1.0, show_default=True, help="Multiply the trace's capacity.")
@click.option("--trace-offset", type=float, default=0.0, show_default=True, help="Start this far into the trace, s.")
@click.option("--bandwidth", type=float, default=None, help="Constant uplink, Mbit/s [default: 10].")
@click.option("--bandwidth-steps", default=None, help="Uplink steps t:Mbps,..., e.g. 0:20,30:1,60:20.")
@click.option("--downlink", type=float, default=20.0, show_default=True,
              help="Downlink, Mbit/s (the cloud's reply is the manifest's outputs, else 4 KB).")
@click.option("--rtt-ms", type=float, default=20.0, show_default=True, help="Round-trip propagation.")
@click.option("--load-steps", default=None, help="Cloud load multiplier steps t:x,..., e.g. 0:1,30:6.")
@click.option("--edge-slow-steps", default=None, help="Edge slowdown steps t:x,..., e.g. 0:1,40:3.")
@click.option("--edge-factor", type=float, default=1.0, show_default=True,
              help="How much slower the edge is than the profiled machine.")
@click.option("--cloud-speedup", type=float, default=1.0, show_default=True,
              help="How much faster the cloud is than the profiled machine.")
@click.option("--hedge-slow", type=float, default=1.0, show_default=True,
              help="A hedged edge-only run (beside a cloud request) takes this many times as long.")
@click.option("--noise", type=float, default=0.05, show_default=True, help="Sigma of log-normal measurement noise.")
@click.option("--stalls", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Chance per frame that the edge or the cloud stalls for 1-3 frames at 1.4-2x.")
@click.option("--contract-only", is_flag=True,
              help="Drive the policies through choose()/observe() alone, as an outside harness does: no hedged "
                   "frames, no deadline hints (the runtime's default deadline applies).")
@click.option("--policies", default="partnner,edge,cloud,neurosurgeon", show_default=True,
              help="Comma-separated policies (partnner, edge, cloud, fixed:<id>, neurosurgeon).")
@click.option("--frames", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write frames.csv, summary.json and plot.png here.")
@click.option("--no-plot", is_flag=True, help="Skip the PNG.")
def sim(profile_path, manifest, synthetic, save_profile, trace, trace_scale, trace_offset, bandwidth,
        bandwidth_steps, downlink, rtt_ms, load_steps, edge_slow_steps, edge_factor, cloud_speedup, hedge_slow,
        noise, stalls, contract_only, policies, frames, seed, out_dir, no_plot):
    """Simulate policies in one world against the per-frame oracle and the best static cut."""
    from partnner_tf.manifest import load_manifest, write_json_atomic
    from partnner_tf.sim import format_table, plot, simulate, write_csv
    from partnner_tf.sim_world import load_profile, make_world, parse_steps, synthetic_manifest, synthetic_profile

    for name, v in (("--edge-factor", edge_factor), ("--cloud-speedup", cloud_speedup), ("--trace-scale", trace_scale),
                    ("--hedge-slow", hedge_slow)):
        if v <= 0:
            raise click.BadParameter(f"expected > 0, received {v}", param_hint=name)
    man = load_manifest(manifest) if manifest else None
    if profile_path is not None:
        prof, name = load_profile(profile_path), Path(profile_path).stem
    elif man is not None or synthetic is not None:
        man = man or synthetic_manifest(synthetic, seed=seed)
        prof, name = synthetic_profile(man, seed=seed), f"{man.name}-synthetic"
    else:
        raise click.UsageError("give --profile, or --manifest / --synthetic N for a synthetic profile")
    if save_profile is not None:
        write_json_atomic(save_profile, prof)
    world = make_world(
        prof, man, edge_factor=edge_factor,
        cloud_speedup=cloud_speedup, uplink=_uplink(trace, trace_scale, bandwidth, bandwidth_steps),
        rtt_s=rtt_ms / 1e3, down_bps=downlink * 1e6, load=parse_steps(load_steps, "--load-steps"),
        slow=parse_steps(edge_slow_steps, "--edge-slow-steps"), noise=noise, stalls=stalls,
        hedge_slow=hedge_slow, trace_offset_s=trace_offset,
        name=name,
    )
    names = [p.strip() for p in policies.split(",") if p.strip()]
    if not names:
        raise PartnnerError("--policies: expected at least one policy name")
    runs, summary = simulate(world, names, frames=frames, seed=seed, contract_only=contract_only)
    click.echo(format_table(summary))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_csv(runs, out_dir / "frames.csv")
        write_json_atomic(out_dir / "summary.json", _finite(summary))
        if not no_plot:
            plot(runs, out_dir / "plot.png", title=f"{world.name}: {world.uplink!r}")
        click.echo(f"wrote {out_dir}/frames.csv, summary.json" + ("" if no_plot else ", plot.png"))


def _finite(obj):
    """JSON has no infinity: a policy that never converged is written as null."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and obj in (float("inf"), float("-inf")):
        return None
    return obj
