"""``python -m directpo`` and the ``directpo`` console script."""

import gc
import sys
from typing import NoReturn


def run() -> NoReturn:
    """``main``'s exit code, without the interpreter's final garbage collections: a process
    holding torch, transformers and a run's objects spent 2-16 s in them after its last line
    (on a busy 2-core machine), before the shell, a scheduler or torchrun saw it end. Frozen
    objects are still freed by reference count as modules are cleared, and atexit handlers and
    the flush of stdout / stderr still run; only garbage in reference cycles is left to the
    operating system (what directpo writes is closed before main returns)."""
    try:
        # imported here, where a Ctrl-C during the import is said as main says one (a
        # traceback through the import machinery, from a user who only changed their mind)
        from directpo.cli import main
    except KeyboardInterrupt:
        print("directpo: interrupted", file=sys.stderr)
        sys.exit(130)
    try:
        code = main()
    except SystemExit as done:  # argparse's --help / --version / usage errors
        code = done.code
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
