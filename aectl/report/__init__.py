"""`aectl report`: compare the runs of one or more sweeps in one table and a few plots.

Reads only what runs leave on disk (.hydra/overrides.yaml, .hydra/config.yaml, metrics.json,
eval/<name>/metrics.json, error.txt, interrupted.txt, a sweep's multirun.yaml and Optuna study), so it works on single
runs (outputs/) and on finished, failed, interrupted and still-running sweeps alike. It imports
Hydra only to expand the job list of a multirun.yaml, matplotlib only to draw, and never torch.
"""


import argparse
import glob
import os
import sys
from pathlib import Path

from aectl.config.errors import AectlError
from aectl.report.output import format_markdown, format_text, write_csv
from aectl.report.plots import plot_all
from aectl.report.ranking import Report, build_report
from aectl.report.study import write_study_report

USAGE = "aectl report <sweep folder or glob> [more folders or globs] [--out DIR]"


def expand(patterns: list[str]) -> list[Path]:
    """Folders and globs → existing folders, in the order given."""
    paths = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern))) if glob.has_magic(pattern) else [pattern]
        folders = [Path(m) for m in matches if Path(m).is_dir()]
        if not folders:
            raise AectlError(f"aectl report: {pattern}: no such folder")
        paths += [p for p in folders if p not in paths]
    return paths


def report(patterns: list[str], out: str | None = None) -> Report:
    """Build the report of the sweeps matching `patterns`; write report.md, report.csv and the
    plots into `out` (default: the sweep folder, or the folder holding all the given ones)."""
    paths = expand(patterns)
    out_dir = Path(out) if out else Path(os.path.commonpath([p.resolve() for p in paths]))
    result = build_report(paths)
    for job in result.jobs:
        job.name = os.path.relpath(job.path.resolve(), out_dir.resolve()) if job.path.resolve() != out_dir.resolve() \
            else job.path.name
    try:
        images = write_files(result, out_dir)
        for path in paths:  # an Optuna study in a sweep folder: its trials, best trial and plots
            images += write_study_report(path, out_dir)
    except OSError as err:
        where = f"--out={out}" if out else str(out_dir)
        raise AectlError(f"aectl report: {where}: cannot write the report there ({err.strerror or err}); "
                         f"choose a folder you can write to{'' if out else ' with --out DIR'}") from None
    print(format_text(result), end="")
    print(f"wrote {out_dir / 'report.md'}, report.csv and {len(images)} plot(s) in {out_dir}")
    return result


def write_files(report: Report, out_dir: Path) -> list[Path]:
    """report.csv, the plots and report.md into `out_dir` (created if missing); the plots' paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(report, out_dir / "report.csv")
    images = plot_all(report, out_dir)
    (out_dir / "report.md").write_text(format_markdown(report, images))
    return images


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aectl report", usage=USAGE,
                                     description="Compare the runs of one or more sweeps: a table "
                                                 "(terminal, report.md, report.csv) and PNG plots.")
    parser.add_argument("folders", nargs="+", help="multirun folders, run folders or globs")
    parser.add_argument("--out", help="where to write the report (default: the sweep folder)")
    args = parser.parse_args(argv)
    try:
        report(args.folders, args.out)
    except AectlError as err:
        print(str(err), file=sys.stderr)
        return 2
    return 0
