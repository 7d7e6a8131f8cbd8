"""``python -m detector.evaluate ...``: the ``evaluate`` subcommand on its own."""

from __future__ import annotations

import argparse
import sys

from detector.evaluate import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detector.evaluate",
        description="Measure trovewatch's detection quality beside baselines on labelled incidents.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
