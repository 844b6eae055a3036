"""The `cvae` command: one subcommand per module in commands/ (see commands/__init__.py)."""
from __future__ import annotations

import argparse
import importlib
import sys

from .commands import MODULES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cvae", description="Conditional VAE toolkit for artists.")
    sub = parser.add_subparsers(dest="command", required=True)
    runners = {}
    for module in MODULES:
        for name, (add_args, run) in importlib.import_module(f".commands.{module}", __package__).COMMANDS.items():
            add_args(sub.add_parser(name))
            runners[name] = run
    args = parser.parse_args(argv)
    try:
        return runners[args.command](args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        # Our errors name the file, field or node; a traceback would only hide that.
        print(f"cvae {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
