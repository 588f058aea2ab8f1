"""`aectl export ckpt=<run or checkpoint> format=saelens [out=<folder>]`: the argument parsing of
the export (aectl/evaluation/export.py writes the files). key=value arguments, as train and eval take."""

import sys

USAGE = ("usage: aectl export ckpt=<run folder or checkpoint> format=saelens [out=<folder>] "
         "[hook_name=<name>] [model_name=<name>]\n")
HELP = USAGE + """
Write a trained sparse autoencoder (model=sae) in another library's layout.

  ckpt=PATH        a run folder (its checkpoints/last.pt) or a checkpoint file
  format=saelens   cfg.json + sae_weights.safetensors, opened by SAELens's SAE.load_from_disk
                   (topk as topk, batchtopk and jumprelu as jumprelu, relu_l1 as standard),
                   in the activations' original units (the run's scaling folded into the weights)
  out=FOLDER       where to write (default: <run>/export/<checkpoint>_<format>)
  hook_name=NAME   the hook point the activations came from (cfg.json's metadata, optional)
  model_name=NAME  the model they came from (cfg.json's metadata, optional)
"""
KEYS = ("ckpt", "format", "out", "hook_name", "model_name")
REQUIRED = ("ckpt", "format")


def parse(argv: list[str]) -> dict[str, str]:
    """key=value arguments → a dict; an unknown, repeated or missing key is refused in one line."""
    from aectl.config.errors import AectlError

    options: dict[str, str] = {}
    allowed = ", ".join(f"{k}=" for k in KEYS)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in KEYS:
            raise AectlError(f"aectl export: {arg}: unknown argument; allowed: {allowed}")
        if key in options:
            raise AectlError(f"aectl export: {key}= given twice ({options[key]!r} and {value!r}); give it once")
        if not value:
            raise AectlError(f"aectl export: {key}= is empty; give a value")
        options[key] = value
    missing = [k for k in REQUIRED if k not in options]
    if missing:
        raise AectlError(f"aectl export: {', '.join(f'{k}=' for k in missing)} missing; {USAGE.strip()}")
    return options


def main(argv: list[str]) -> int:
    if {"-h", "--help"} & set(argv):
        print(HELP, end="")
        return 0
    from aectl.config.errors import AectlError
    from aectl.evaluation.export import export
    from aectl.cli.tasks import shown_path

    try:
        options = parse(argv)
        folder = export(options["ckpt"], options["format"], options.get("out"), options.get("hook_name"),
                        options.get("model_name"))
    except AectlError as err:
        print(str(err), file=sys.stderr)
        return 2
    print(f"wrote {shown_path(folder)}/cfg.json and sae_weights.safetensors "
          f"(load with sae_lens.SAE.load_from_disk({str(folder)!r}))")
    return 0
