"""The ``mlengine`` command line.

Argument parsing happens in ``main`` only (never at import time) and every heavy library is
imported inside the handler that needs it, so ``mlengine --help`` stays fast. Known errors
(``MlengineError``) end as one line on stderr and exit code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from mlengine import __version__
from mlengine.constants import DEFAULT_ROWS, DEFAULT_SEED, TAXI_NOISE_STD
from mlengine.errors import MlengineError

# modules that add their own sub-commands: each has add_cli(subparsers) and imports nothing heavy
CLI_EXTENSIONS = (
    "mlengine.pipelines.cli",
    "mlengine.kubeflow.cli",
    "mlengine.components.train.cli",
    "mlengine.components.tune.cli",
    "mlengine.components.deploy.cli",
    "mlengine.components.monitor.cli",
    "mlengine.components.ingest.cli",
    "mlengine.components.batch_predict.cli",
)
# a model server a run starts with --keep-serving outlives the run: it does not watch it
DETACHED_COMMANDS = ("serve",)


class _Parser(argparse.ArgumentParser):
    """No abbreviated flags anywhere: ``--epoch`` must not silently mean ``--epochs``."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mlengine",
        description="A self-hostable Cloud ML Engine: Kubeflow Pipelines components "
                    "from raw CSV to a live KServe endpoint.",
    )
    parser.add_argument("--version", action="version", version=f"mlengine {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an unexpected error (also MLENGINE_DEBUG=1)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    gen = subparsers.add_parser("generate", help="write a synthetic NYC taxi-fare CSV with a known noise floor")
    gen.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="number of data rows (default %(default)s)")
    gen.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed; same seed, same file")
    gen.add_argument("--out", required=True, help="CSV file to write")
    gen.add_argument("--noise-std", type=float, default=TAXI_NOISE_STD, help="std of the fare noise = the RMSE floor")
    gen.add_argument("--dirty-fraction", type=float, default=0.0, help="fraction of deliberately broken rows (tests)")
    gen.add_argument("--shift", type=float, default=0.0, help="0..1: move the population (skew monitor tests)")
    gen.set_defaults(handler=_generate)

    for module_name in CLI_EXTENSIONS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue  # that part of the suite is not installed
        module.add_cli(subparsers)
    return parser


def _generate(args: argparse.Namespace) -> int:
    from mlengine.synthetic import write_csv

    try:
        counts = write_csv(args.out, args.rows, args.seed, args.noise_std, args.dirty_fraction, args.shift)
    except ValueError as err:
        raise MlengineError(str(err)) from None
    print(json.dumps({"out": str(Path(args.out).resolve()), **counts, "noise_std": args.noise_std}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from mlengine.components.shared.logs import setup_logging

    if args.command in DETACHED_COMMANDS:
        from mlengine.components.shared.runguard import leave_run

        leave_run()
    setup_logging()  # every step's progress lines (the mlengine.* loggers) on stderr
    try:
        return int(args.handler(args) or 0)
    except MlengineError as err:
        if err.__cause__ is not None and (args.debug or os.environ.get("MLENGINE_DEBUG") == "1"):
            import traceback  # e.g. the traceback inside a model module's build_model

            traceback.print_exception(err.__cause__)
        print(f"mlengine {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mlengine {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug or os.environ.get("MLENGINE_DEBUG") == "1":
            raise
        first = (str(err).strip().splitlines() or [""])[0][:300]
        print(f"mlengine {args.command}: unexpected error: {type(err).__name__}: {first!r} "
              "(--debug or MLENGINE_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
