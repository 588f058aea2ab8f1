"""Running a Hydra app as `aectl train` / `aectl eval`: the configs and schemas, the run folder
claimed before Hydra writes into it, sweep job names, torchrun ranks, and every error as one
line with exit code 2."""

import itertools
import logging
import os
import sys
from pathlib import Path

from aectl.cli.messages import one_line
from aectl.config.errors import AectlError
from aectl.runs.signals import Interrupted

log = logging.getLogger("aectl")

def config_dir() -> str:
    """The YAML configs: shipped inside the package in a wheel, top-level configs/ in a checkout."""
    package = Path(__file__).parent.parent
    packaged = package / "configs"
    return str(packaged if packaged.is_dir() else package.parent / "configs")


def register_schemas() -> None:
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from aectl.cli.help import help_fields
    from aectl.config import EvalConfig, TrainConfig

    OmegaConf.register_new_resolver("aectl_fields", help_fields, replace=True)  # --help's field descriptions

    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    ConfigStore.instance().store(name="eval_schema", node=EvalConfig)


class _InputError(BaseException):
    """Carries an AectlError of a single run past Hydra's job runner (which catches Exception
    and prints its own line) to `_run_hydra`, which prints it as one line."""


def _single_run_errors(task):
    """In a single run, bad input ends the run with one line; in a sweep it fails only its job."""
    import functools

    @functools.wraps(task)
    def wrapper(cfg):
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        try:
            return task(cfg)
        except (Interrupted, KeyboardInterrupt) as stopped:
            _record_interruption(stopped)
            raise
        except Exception as err:
            if HydraConfig.get().mode == RunMode.RUN:
                if isinstance(err, AectlError):
                    raise _InputError(err) from None
                raise
            _record_failure(err)
            raise

    return wrapper


def _record_failure(err: Exception) -> None:
    """A failed sweep job leaves one line in <job>/error.txt, so `aectl report` lists it as
    failed with its reason instead of dropping it."""
    from hydra.core.hydra_config import HydraConfig

    from aectl.runs.runfolder import error_line, mark_failed

    log.error("job failed: %s", error_line(err))
    mark_failed(HydraConfig.get().runtime.output_dir, err)


def _record_interruption(stopped: BaseException) -> None:
    """A run stopped by a signal or Ctrl-C leaves <run>/interrupted.txt, so `aectl report` says
    "interrupted" rather than "running" (and, in a sweep, tells it from the jobs never started)."""
    from hydra.core.hydra_config import HydraConfig

    from aectl.runs.runfolder import mark_interrupted

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.job.name != "train":  # eval writes into the evaluated run, not a run folder of its own
        return
    line = "; ".join(stopped.message().splitlines()) if isinstance(stopped, Interrupted) else "interrupted by Ctrl-C"
    mark_interrupted(hydra_cfg.runtime.output_dir, line)
    _to_log_files(line)


def _to_log_files(line: str) -> None:
    """`line` in the run's train.log only: the terminal gets it as the command's last stderr
    line, but a terminal's pipe may have gone with Ctrl-C (`aectl train 2>&1 | tee log`)."""
    record = log.makeRecord(log.name, logging.WARNING, __file__, 0, line, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _hydra_app(task, config_name: str):
    import hydra

    register_schemas()
    return hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)(task)


def _join_process_group(args: list[str]) -> list[str]:
    """This process is one rank of a torchrun job: join the process group; every rank gets rank
    0's run folder (the config's hydra.run.dir pattern unless the command line sets one)."""
    import yaml

    from aectl.runtime import distributed

    default = yaml.safe_load((Path(config_dir()) / "train.yaml").read_text())["hydra"]["run"]["dir"]
    return distributed.setup(args, default)


def run_hydra(command: str, args: list[str]) -> int:
    """Run a Hydra app with `args` as its command line; bad input ends in one line, exit 2."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from aectl.cli.tasks import eval_task, train_task
    from aectl.runs.runfolder import forget_new_run_dir, remove_refused_run_dir

    task, config_name = {"train": (train_task, "train"), "eval": (eval_task, "eval")}[command]
    stray = _stray_word(command, args)
    if stray:
        print(f"aectl {command}: error: {stray}", file=sys.stderr)
        return 2
    forget_new_run_dir()  # a folder noted by an earlier command of this process is not this one's
    full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us; we print them in one line
    if "-m" in args or "--multirun" in args:
        args = [*map(_search_space_override, args)]
        args = [*args, *_name_jobs_by_swept_keys(args)]
    sys.argv = [sys.argv[0], *args]
    # torchrun (or any launcher setting the env:// rendezvous variables) started this process.
    under_torchrun = command == "train" and all(v in os.environ for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR"))
    try:
        if under_torchrun:
            sys.argv = [sys.argv[0], *_join_process_group(args)]
        with _claim_explicit_run_dir(command, sys.argv):
            _hydra_app(_single_run_errors(task), config_name)()
    except (_InputError, AectlError, HydraException, OmegaConfBaseException) as err:
        err = err.args[0] if isinstance(err, _InputError) else err
        if full_error == "1":
            raise err
        remove_refused_run_dir()
        print(f"aectl {command}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except Interrupted as stopped:
        print(f"aectl {command}: {stopped.message()}", file=sys.stderr)
        return stopped.exit_code
    except KeyboardInterrupt:  # outside training's own handlers (start-up, eval): no traceback
        print(f"aectl {command}: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # e.g. a run folder Hydra cannot create, a full disk
        if full_error == "1":
            raise
        remove_refused_run_dir()
        print(f"aectl {command}: error: {err.strerror or err}{f': {err.filename}' if err.filename else ''} "
              "(check hydra.run.dir and the paths in the config)", file=sys.stderr)
        return 2
    finally:
        if under_torchrun:
            from aectl.runtime.distributed import teardown

            teardown()
        if full_error is None:
            del os.environ["HYDRA_FULL_ERROR"]
        else:
            os.environ["HYDRA_FULL_ERROR"] = full_error
    return 0


# Hydra flags whose value is the next word (--cfg job, --info defaults), not an override.
_VALUE_FLAGS = ("-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name", "-cd",
                "--config-dir", "--experimental-rerun", "-i", "--info")


def _stray_word(command: str, args: list[str]) -> str | None:
    """The error line for a word that is neither an override nor a flag, or None. Most often it
    is the rest of a value the shell split at a space (dataset.path=my data.csv): say how to quote it."""
    for i, arg in enumerate(args):
        if "=" in arg or arg.startswith(("-", "~")) or (i and args[i - 1] in _VALUE_FLAGS):
            continue
        before = args[i - 1] if i else ""
        if "=" not in before or before.startswith("-"):
            return f"{arg}: not an override; overrides are key=value (e.g. model=vae), see aectl {command} --help"
        words = [arg, *itertools.takewhile(lambda a: "=" not in a and not a.startswith(("-", "~")), args[i + 1:])]
        return (f"{arg}: not an override (key=value); a value with spaces must be quoted, "
                f"e.g. \"{' '.join([before, *words])}\"")
    return None


# Hydra flags after which no run starts (so no run folder to claim).
_NO_RUN_FLAGS = ("-m", "--multirun", "-c", "--cfg", "-h", "--help", "--hydra-help", "-i", "--info", "-sc",
                 "--shell-completion")


def _claim_explicit_run_dir(command: str, argv: list[str]):
    """`aectl train hydra.run.dir=<folder>`: lock and check the folder before Hydra writes its
    .hydra/ and train.log there (aectl.runs.runfolder), so a second run pointed at it leaves it
    untouched. Resuming in place keeps the folder's original .hydra/ record."""
    import contextlib

    from aectl.runs.runfolder import claim, note_new_run_dir

    args = argv[1:]
    given = [a.split("=", 1)[1] for a in args if a.lstrip("+").startswith("hydra.run.dir=")]
    if command != "train" or not given or "${" in given[-1] or \
            any(a.split("=", 1)[0] in _NO_RUN_FLAGS for a in args):
        return contextlib.nullcontext()
    run_dir = Path(given[-1].strip("'\""))
    resuming = any(a.startswith("trainer.resume=") and a.split("=", 1)[1] not in ("", "null") for a in args)
    if resuming and (run_dir / "checkpoints" / "last.pt").is_file() and \
            not any(a.startswith("hydra.output_subdir=") for a in args):
        argv.append("hydra.output_subdir=null")
    note_new_run_dir(run_dir)  # before the lock creates it
    return claim(run_dir, resuming)


def _name_jobs_by_swept_keys(args: list[str]) -> list[str]:
    """Sweep job folders are named by the overrides that vary (model.latent_dim=8), not by
    every override of the command line: exclude the fixed ones from Hydra's override_dirname."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = [a for a in args if "=" in a and not a.startswith("-") and not a.startswith("hydra.")]
    parsed = OverridesParser.create().parse_overrides(overrides)
    fixed = [o.key_or_group for o in parsed if not o.is_sweep_override()]
    return [f"hydra.job.config.override_dirname.exclude_keys=[{','.join(fixed)}]"] if fixed else []


_SEARCH_PARAMS = "hydra.sweeper.params."


def _search_space_override(arg: str) -> str:
    """`hydra.sweeper.params.<key>=<space>` as `<key>=<space>`: the same search space for the key
    (a command-line space replaces a preset's), in the one spelling Hydra's parser accepts, since it
    refuses sweep syntax on hydra.* keys. One level of quotes around the space is dropped."""
    if not arg.startswith(_SEARCH_PARAMS) or "=" not in arg:
        return arg
    key, space = arg[len(_SEARCH_PARAMS):].split("=", 1)
    if len(space) > 1 and space[0] == space[-1] and space[0] in "'\"":
        space = space[1:-1]
    return f"{key}={space}"
