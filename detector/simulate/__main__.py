"""``python -m detector.simulate --out DIR ...``: the ``simulate`` command on its own."""

from __future__ import annotations

import argparse
import sys

from detector.simulate import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detector.simulate",
        description="Write a simulated population's PostgreSQL 15 + pgAudit jsonlog, with labels.",
    )
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
