"""The ``partnner`` command: one click group whose subcommands load on demand.

Each subcommand lives beside the code it drives and is imported only when named (or when help is
listed); none of those modules imports TensorFlow at module level, so ``partnner --help`` and
every edge command stay TensorFlow-free.
"""

import importlib
import logging
import sys

import click

from partnner_tf.errors import PartnnerError

#: command name -> "module:attribute"; adding a command is adding a line here.
COMMANDS = {
    "convert": "partnner_tf.converters.cli:convert",
    "inspect": "partnner_tf.converters.cli:inspect",
    "cloud": "partnner_tf.runtime.cloud.cli:cloud",
    "keys": "partnner_tf.runtime.cloud.cli:keys",
    "edge": "partnner_tf.runtime.cli:edge",
    "profile": "partnner_tf.runtime.profile:profile",
    "sim": "partnner_tf.sim_cli:sim",
    "board": "partnner_tf.boards.cli:board",
    "bench": "partnner_tf.testbed.cli:bench",
    "demo": "partnner_tf.testbed.cli:demo",
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that command is needed."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            # A part not installed yet or broken must not take the whole CLI down.
            return click.Command(name, help=f"(unavailable: {exc})", callback=lambda err=exc: _fail(err))


def _fail(exc):
    raise click.ClickException(f"this command is unavailable: {exc}")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="partnner-tf")
@click.pass_context
def cli(ctx, verbose):
    """Adaptive edge-cloud DNN partitioning: convert, serve, run on the edge, simulate, bench."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ctx.ensure_object(dict)


def main(argv=None):
    """Console entry point: PartnnerError becomes a one-line message and exit code 1."""
    try:
        code = cli.main(args=argv, prog_name="partnner", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PartnnerError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
