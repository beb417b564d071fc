"""``partnner convert`` and ``partnner inspect`` (no TensorFlow import at module level)."""

import click

from partnner_tf.errors import PartnnerError


@click.command()
@click.argument("model")
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False),
              help="Output folder (written whole or not at all).")
@click.option("--input-shape", default=None, metavar="H,W,C",
              help="Input shape for keras.applications.NAME or an unbuilt Sequential model.")
@click.option("--cuts", default="pareto", show_default=True, metavar="pareto|all|NAMES",
              help="Which cuts to build: pareto, all, or comma-separated layer names.")
@click.option("--quantize", type=click.Choice(["none", "fp16", "int8"]), default="none",
              show_default=True, help="Quantization of the TFLite prefixes.")
@click.option("--calibration", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of images or .npy arrays for int8 calibration (random data otherwise).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes converting prefixes in parallel.")
@click.option("--select-tf-ops", is_flag=True,
              help="Let TFLite embed TensorFlow ops it has no builtin for (needs the Flex delegate).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, envvar="PARTNNER_CACHE",
              help="Content cache folder [default: ~/.cache/partnner-tf].")
@click.option("--no-cache", is_flag=True, help="Neither read nor fill the cache.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
def convert(model, out, input_shape, cuts, quantize, calibration, jobs, select_tf_ops, cache_dir,
            no_cache, progress):
    """Convert MODEL into verified per-cut TFLite prefixes, model.keras and a manifest.

    MODEL is a .keras or .h5 file, a TensorFlow SavedModel folder (cloud-only and
    edge-only cuts only), or keras.applications.NAME (built with weights=None).
    """
    from partnner_tf.converters.convert import convert as run

    try:
        manifest = run(model, out, input_shape=input_shape, cuts=cuts, quantize=quantize,
                       calibration=calibration, jobs=jobs, select_tf_ops=select_tf_ops,
                       cache_dir=False if no_cache else cache_dir, progress=progress)
    except PartnnerError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(format_table(manifest))
    total = manifest.raw.get("edge_total_bytes", 0)
    click.echo(f"wrote {out}: {len(manifest.cuts)} cuts, edge side {total / 1e6:.2f} MB in total")


@click.command()
@click.argument("out", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON instead of a table.")
def inspect(out, as_json):
    """Show the cuts of a converted model OUT (folder or manifest.json)."""
    import json

    from partnner_tf.manifest import load_manifest

    try:
        manifest = load_manifest(out)
    except PartnnerError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(manifest.raw, indent=1))
    else:
        click.echo(format_table(manifest))


def _cut_name(cut, last_id):
    if cut.is_cloud_only:
        return "(input: cloud only)"
    if not cut.layers and cut.id == last_id:
        return "(edge only)"
    return ",".join(cut.layers)


def format_table(manifest):
    """The cut table: id, layer, boundary KB, prefix/suffix MMACs, prefix size, verification."""
    raw_model = manifest.raw.get("model", {})
    head = (f"model {manifest.name}  input {list(manifest.input.shape)} {manifest.input.dtype}  "
            f"quantization {manifest.raw.get('quantization', 'none')}  "
            f"MACs {raw_model.get('macs', 0) / 1e6:.1f} M")
    rows = [("id", "layer", "boundary KB", "prefix MMAC", "suffix MMAC", "prefix KB", "rel err", "top1")]
    last = len(manifest.cuts) - 1
    for c in manifest.cuts:
        ver = c.extra.get("verify") or {}
        err = max(ver.get("rel_err", 0.0), ver.get("boundary_rel_err", 0.0)) if ver else None
        rows.append((
            str(c.id), _cut_name(c, last), f"{c.boundary_bytes / 1024:.1f}",
            f"{c.prefix_macs / 1e6:.2f}", f"{c.suffix_macs / 1e6:.2f}",
            f"{c.extra['prefix_bytes'] / 1024:.1f}" if c.extra.get("prefix_bytes") is not None else "-",
            f"{err:.1e}" if err is not None else "-",
            f"{ver['top1_agree']:.2f}" if "top1_agree" in ver else "-",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [head]
    for r in rows:
        lines.append("  ".join(v.ljust(w) if i == 1 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)
