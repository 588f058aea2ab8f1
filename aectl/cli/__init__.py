"""`aectl train | eval | report | export`: the dispatcher. The CLI layer (this package) is the only one
that imports hydra/omegaconf; it parses and resumes configs and calls the Hydra-free core
(aectl.training.build, aectl.evaluation.evaluate, aectl.report). Nothing here imports torch at module level, so
`aectl --help` and tab completion start fast.
"""

import sys

from aectl.cli.completion import completion
from aectl.cli.hydra_run import config_dir, register_schemas, run_hydra
from aectl.cli.messages import one_line
from aectl.cli.streams import outliving_streams

__all__ = ["main", "config_dir", "register_schemas", "one_line"]

USAGE = """usage: aectl <command> [options and overrides]

commands:
  train    train an autoencoder from composed configs
           e.g. aectl train model=vae beta=0.5 | aectl train -m model.latent_dim=2,8,32
  eval     evaluate a checkpoint, run folder or sweep folder: aectl eval ckpt=outputs/<date>/<time>
  report   compare the runs of a sweep: aectl report multirun/<date>/<time>
  export   write a sparse autoencoder for another library: aectl export ckpt=<run> format=saelens

Run `aectl <command> --help` for the options of a command, `aectl --version` for the version.
Tab completion (bash): eval "$(aectl train -sc install=bash)"
"""


COMMANDS = ("train", "eval", "report", "export")


def version() -> str:
    """The installed distribution's version; the package's own where it is not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("aectl")
    except PackageNotFoundError:
        from aectl import __version__

        return __version__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with outliving_streams():  # a reader that went away (`| tee` ended by Ctrl-C) costs no checkpoint
        return _dispatch(argv)


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if "--version" in argv[:1] or (argv[0] in COMMANDS and "--version" in argv[1:]):  # before Hydra's own --version
        print(f"aectl {version()}")
        return 0
    if argv[0] == "-sc":
        return completion(argv, COMMANDS)
    command, rest = argv[0], argv[1:]
    if command == "eval" and {"-m", "--multirun"} & set(rest):  # each job would overwrite <run>/eval
        print("aectl eval: error: -m/--multirun is not supported; to evaluate every job of a sweep, "
              "pass its folder: ckpt=multirun/<date>/<time>", file=sys.stderr)
        return 2
    if command in ("train", "eval"):
        return run_hydra(command, rest)
    if command == "report":  # reads run folders only: no Hydra app, no config
        from aectl.report import main as report_main

        return report_main(rest)
    if command == "export":  # reads a checkpoint, writes files: no Hydra app either
        from aectl.cli.export import main as export_main

        return export_main(rest)
    print(f"aectl: unknown command {command!r}; allowed: {', '.join(COMMANDS)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
