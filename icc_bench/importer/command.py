"""``icc-bench import``: the command (its options, progress and summary line).

The parser is built on every start of the CLI, ``icc-bench --help`` included, so the importer's
modules (and torch) are imported when the command runs, not here.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from icc_bench.config import SpecError
from icc_bench.errors import UserError


def _pairs(text: str | None, flag: str) -> dict[str, str]:
    """``"a=b,c"`` -> ``{"a": "b", "c": "c"}``."""
    out = {}
    for item in (text or "").split(","):
        if item.strip():
            key, _, value = item.partition("=")
            if not key.strip():
                raise SpecError(f"{flag} {text!r}: '{item}' names no column; write COLUMN=NAME")
            out[key.strip()] = value.strip() or key.strip()
    return out


def _constants(items: Iterable[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise SpecError(f"--set {item!r}: write NAME=VALUE, e.g. --set optimizer=sgd")
        out[name.strip()] = value
    return out


def cmd_import(args: argparse.Namespace) -> int:
    from icc_bench.cli.output import Progress, console
    from icc_bench.importer.manifest import read_manifest, with_settings
    from icc_bench.importer.template import write_template
    from icc_bench.importer.validation import plan_import
    from icc_bench.importer.writing import write_import

    if args.template is not None:
        for path in write_template(args.template or None):
            console.print(f"written: {path}", highlight=False)
        return 0
    if args.manifest is None or args.to is None:
        raise UserError("icc-bench import needs a MANIFEST and --to ZOO_DIR (or --template to write an example manifest)")
    manifest = with_settings(
        read_manifest(args.manifest), args.manifest, axes=_pairs(args.axes, "--axes"), constants=_constants(args.set),
        rename=_pairs(args.rename, "--rename"), ignore=list(_pairs(args.ignore, "--ignore")),
    )
    n = len(manifest.models)
    with Progress(console, transient=True) as progress:
        progress.start(n, description="validating")
        plan = plan_import(manifest, args.manifest, args.to, data_dir=args.data_dir, measure_accuracy=args.measure_accuracy,
                           on_row=progress.advance)
        progress.start(n, description="writing")
        write_import(plan, args.to, data_dir=args.data_dir, device=args.device, measure_accuracy=args.measure_accuracy,
                     on_model=progress.advance)
    source = "measured on the dataset" if args.measure_accuracy else "from the manifest"
    console.print(
        f"imported {len(plan.models)} models into {args.to} (accuracies {source}; scored on the axes "
        f"{', '.join(plan.axes) or '(none)'}); next: icc-bench evaluate {args.to}", highlight=False,
    )
    return 0


def add_import_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``icc-bench import`` on the CLI's subparsers."""
    from icc_bench.cli.options import add_data_dir, add_device

    p = subparsers.add_parser(
        "import", help="turn checkpoints trained elsewhere, listed in a manifest, into a zoo",
        description="Import a population trained elsewhere from a CSV or JSON manifest, one row per model; "
        "`icc-bench import --template` writes an annotated example.",
    )
    p.add_argument("manifest", nargs="?", metavar="MANIFEST", help="the manifest, .csv or .json")
    p.add_argument("--to", metavar="ZOO_DIR", help="the new zoo folder (its name is the population's name)")
    p.add_argument("--axes", metavar="COL=AXIS,...",
                   help="your hyperparameter columns and their axes, e.g. lr=learning_rate,bs=batch_size,mom=momentum")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a value every model shares: a manifest column or one of the eight hyperparameters (repeatable)")
    p.add_argument("--rename", metavar="COL=NAME,...",
                   help="your names for the columns icc-bench reads, e.g. ckpt=checkpoint,acc=test_accuracy")
    p.add_argument("--ignore", metavar="COL,...", help="columns to leave out")
    p.add_argument("--measure-accuracy", action="store_true",
                   help="measure train and test accuracy on the dataset instead of reading them")
    p.add_argument("--template", nargs="?", const="", default=None, metavar="PATH",
                   help="write an example manifest (.csv or .json; default: both, as manifest-template.*) and exit")
    add_data_dir(p)
    add_device(p, help="for --measure-accuracy: auto (CUDA when present), cpu, cuda, ...")
    p.set_defaults(func=cmd_import)
    return p
