"""Entry point: ``python main.py [--root DIR] <command> ...``, ``--test``, or the interactive menu.

This is the error boundary. A :class:`TradelabError` prints one clear line and exits with its code (2 for user
errors, 1 for a failed stage); any other exception is logged with its traceback to ``logs/app.log`` and reported in
one line (exit 1). Importing this module does not import torch, transformers, peft, sb3 or verl.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from tradelab.cli.parser import UsageError, build_parser
from tradelab.errors import TradelabError
from tradelab.paths import Workspace

log = logging.getLogger("tradelab")


def setup_logging(root: str | Path, level: str = "INFO") -> Path:
    """Send tradelab's (and warnings') logs to ``<root>/logs/app.log``; nothing goes to the screen."""
    path = Workspace.at(root).app_log()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root_logger = logging.getLogger()
    for old in [h for h in root_logger.handlers if getattr(h, "_tradelab", False)]:
        root_logger.removeHandler(old)
        old.close()
    handler._tradelab = True  # type: ignore[attr-defined]
    root_logger.addHandler(handler)
    root_logger.setLevel(level)
    logging.captureWarnings(True)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 1 a stage failed, 2 user error, 130 interrupted)."""
    from tradelab.cli import render

    out = render.console()
    err = render.console(stderr=True)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        err.print(f"error: {exc}", markup=False)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    log_path = setup_logging(args.root)
    log.info("tradelab %s", " ".join(argv if argv is not None else sys.argv[1:]))
    try:
        if args.test and args.command is None:
            from tradelab.cli.commands import run_test_mode

            return run_test_mode(args, out)
        if args.command is None:
            if not sys.stdin.isatty():
                raise TradelabError(
                    "the menu needs an interactive terminal and stdin is not a TTY; run a subcommand instead, "
                    "e.g. `python main.py --test` or `python main.py status` (see `python main.py --help`)"
                )
            from tradelab.cli.menu import run_menu

            return run_menu(args.root, args.config_dir, out)
        from tradelab.cli.commands import run_command

        return run_command(args, out)
    except TradelabError as exc:
        # A wrapped unexpected error keeps its traceback in the log (never on screen).
        log.error("%s: %s", type(exc).__name__, exc, exc_info=exc.__cause__ is not None)
        err.print(f"error: {exc}", markup=False)
        return exc.exit_code
    except KeyboardInterrupt:
        log.warning("interrupted by the user")
        err.print("interrupted", markup=False)
        return 130
    except Exception as exc:  # the one place unexpected errors are caught: log the traceback, one line on screen
        log.exception("unexpected error")
        err.print(f"error: unexpected {type(exc).__name__}: {exc} (traceback in {log_path})", markup=False)
        return 1
