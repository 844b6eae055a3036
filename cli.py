"""The `cvae` command: one subcommand per module in commands/ (see commands/__init__.py)."""
from __future__ import annotations

import argparse
import errno
import importlib
import sys
import warnings

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
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 is printed escaped, not a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    # A warning (e.g. a control value outside its trained range) is one line for the user, not a source location.
    warnings.showwarning = lambda message, *_, **__: print(f"cvae {args.command}: warning: {message}", file=sys.stderr)
    try:
        return runners[args.command](args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `cvae run --print-api | head`: the reader has what it wanted
        sys.stderr.close()  # nothing more to say, and Python's own flush at exit must not complain
        return 0
    except FileNotFoundError as err:
        print(f"cvae {args.command}: error: {_os_message(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # read-only, disk full, a folder where a file goes: the system's fault, not the input's
        print(f"cvae {args.command}: error: {_os_message(err)}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"cvae {args.command}: error: out of memory; use fewer images, frames or a smaller size", file=sys.stderr)
        return 1
    except (ValueError, RuntimeError) as err:
        # Our errors name the file, field or node; a traceback would only hide that.
        print(f"cvae {args.command}: error: {err}", file=sys.stderr)
        return 2


_OS_HINTS = {
    errno.ENOSPC: "free some space or choose another folder",
    errno.EACCES: "choose a folder you can write to",
    errno.EPERM: "choose a folder you can write to",
    errno.EROFS: "the disk is read-only: choose another folder",
    errno.EISDIR: "it is a folder: give a file name",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a file is in the way of a folder the output needs",
}


def _os_message(err: OSError) -> str:
    """The path and what went wrong, without a traceback; our own messages (no errno) as they are."""
    if err.errno is None:
        return str(err)
    path = err.filename if err.filename is not None else ""
    what = err.strerror or str(err)
    hint = _OS_HINTS.get(err.errno)
    return f"{path}: {what}" + (f" ({hint})" if hint else "") if path else what + (f" ({hint})" if hint else "")


if __name__ == "__main__":
    sys.exit(main())
