"""The ``archlab`` command line: a thin dispatch over typed library functions.

Each command group lives in ``archlab.commands.<group>`` and exposes ``register(subparsers)``, which
adds its parser(s) and sets ``func`` (``args -> int exit code``). This file only wires them up and
turns user errors into one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Sequence

from archlab import __version__
from archlab.errors import ArchlabError

# Order here is the order in `archlab --help`.
COMMAND_MODULES = (
    "archlab.commands.study",
    "archlab.commands.cost",
    "archlab.commands.train",
    "archlab.commands.use",
    "archlab.commands.lab",
)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line (plus exit code 2), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="archlab",
        description="Transformers vs RNNs vs CNNs: exact costs, reference models, measured claims.",
    )
    parser.add_argument("--version", action="version", version=f"archlab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except ArchlabError as e:
        # One line, no traceback: the message says what was wrong and what to do.
        msg = " ".join(str(e).split())
        print(f"archlab {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the user named cannot be used (too long, a device, ...)
        where = f"{e.filename}: " if e.filename else ""
        print(f"archlab {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:
        if not _out_of_memory(e):
            raise
        # The sizes asked for (batch, context, model) need more memory than there is: one line.
        size = re.search(r"allocate (\d+) bytes", str(e))
        what = f" (an allocation of {int(size.group(1)) / 2**30:,.1f} GiB failed)" if size else ""
        print(
            f"archlab {args.command}: error: out of memory{what}; use smaller sizes "
            "(--batch-size, --block-size, the model's) or free memory",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("archlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _out_of_memory(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    return re.search(r"can't allocate memory|not enough memory|out of memory", str(e)) is not None


if __name__ == "__main__":
    raise SystemExit(main())
