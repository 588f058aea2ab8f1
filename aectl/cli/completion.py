"""Shell completion through the dispatcher: `aectl train|eval <Tab>` completes Hydra overrides,
`aectl report <Tab>` folders, `aectl <Tab>` the commands."""

import os


def completion(args: list[str], commands: tuple[str, ...]) -> int:
    """Hydra's shell completion calls `aectl -sc query=bash` with COMP_LINE='aectl train ...':
    drop the subcommand word so Hydra completes the overrides of that command."""
    words = os.environ.get("COMP_LINE", "").split(maxsplit=2)
    if len(words) >= 2 and words[1] in ("train", "eval"):
        line = os.environ["COMP_LINE"]
        cut = line.index(words[1]) + len(words[1])
        os.environ["COMP_LINE"] = line[:line.index(words[1])] + line[cut:].lstrip()
        removed = len(line) - len(os.environ["COMP_LINE"])
        os.environ["COMP_POINT"] = str(max(0, int(os.environ.get("COMP_POINT", len(line))) - removed))
        from aectl.cli.hydra_run import run_hydra

        return run_hydra(words[1], args)
    if len(words) >= 2 and words[1] == "report":
        print("\n".join(_report_completions(os.environ["COMP_LINE"], os.environ.get("COMP_POINT"))))
        return 0
    if len(words) <= 1 or (len(words) == 2 and not os.environ["COMP_LINE"].endswith(" ")):
        print("\n".join(f"{c} " for c in commands))  # the command word itself
    return 0


def _report_completions(line: str, point: str | None) -> list[str]:
    """`aectl report <Tab>`: the folders (and globs' folders) starting with the word being
    completed, each ending in / so the next Tab goes inside; --out after a dash."""
    import glob

    typed = line[:int(point)] if point and point.isdigit() else line
    word = "" if typed.endswith(" ") else typed.split()[-1]
    if word.startswith("-"):
        return [o for o in ("--out ", "--help ") if o.startswith(word)]
    home = os.path.expanduser("~")
    pattern = os.path.expanduser(word)
    folders = sorted(p for p in glob.glob(glob.escape(pattern) + "*") if os.path.isdir(p))
    return [(("~" + p[len(home):]) if word.startswith("~") else p) + "/" for p in folders]
