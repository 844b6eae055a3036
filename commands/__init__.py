"""Subcommands of `cvae`. Each module defines COMMANDS = {name: (add_args, run)}; `run` returns
an exit code. Modules are imported only to build the parser, so keep heavy imports inside `run`."""
MODULES = ("train", "run", "bench", "toolbox", "prior")
