"""Entry point: ``python main.py [--root DIR] <command> ...``, ``--test``, or the interactive menu.

This is the error boundary. A :class:`TradelabError` prints one clear line and exits with its code (2 for user
errors, 1 for a failed stage); an OSError no layer below wrapped exits 2 and a MemoryError 1, each in one line; a
closed output pipe exits 141 silently; any other exception is logged with its traceback to ``logs/app.log`` and
reported in one line (exit 1). Logging is set up inside the boundary, so a bad ``--root`` is one line too. Importing this module does not import torch, transformers, peft, sb3 or verl.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from tradelab.cli.parser import UsageError, build_parser
from tradelab.errors import ConfigError, TradelabError, WorkspaceError
from tradelab.paths import Workspace

log = logging.getLogger("tradelab")


def setup_logging(root: str | Path, level: str = "INFO") -> Path | None:
    """Send tradelab's (and warnings') logs to ``<root>/logs/app.log``; nothing goes to the screen.

    Returns:
        The log file, or None when it cannot be written (a read-only workspace): commands that only read, such as
        ``status``, still work, and a command that writes fails with its own one-line error.

    Raises:
        WorkspaceError: ``root`` exists and is not a directory.
    """
    root_logger = logging.getLogger()
    for old in [h for h in root_logger.handlers if getattr(h, "_tradelab", False)]:
        root_logger.removeHandler(old)
        old.close()
    root_logger.setLevel(level)
    logging.captureWarnings(True)
    ws_root = Path(root).expanduser()
    path: Path | None = Workspace.at(root).app_log()
    try:
        if ws_root.exists() and not ws_root.is_dir():
            raise NotADirectoryError(root)
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        # Nothing may reach the screen but the command's own output (a handler-less logger would print there), so
        # the log is dropped, not redirected.
        handler, path = logging.NullHandler(), None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._tradelab = True  # type: ignore[attr-defined]
    root_logger.addHandler(handler)
    if ws_root.exists() and not ws_root.is_dir():
        raise WorkspaceError(f"--root {root}: is a file, not a folder; pass the workspace folder (or a new one)")
    return path


def one_line(text: str) -> str:
    """``text`` with its line breaks folded, so an error never spans several screen lines."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _quiet_stdout() -> None:
    """After a closed pipe (``status | head -1``): point stdout at /dev/null so the exit flush cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 1 a stage failed, 2 user error, 130 interrupted, 141 the
    output pipe closed)."""
    from tradelab.cli import render

    out = render.console()
    err = render.console(stderr=True)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        err.print(f"error: {one_line(exc)}", markup=False)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    log_path: Path | None = None
    try:
        log_path = setup_logging(args.root)
        log.info("tradelab %s", " ".join(argv if argv is not None else sys.argv[1:]))
        return _dispatch(args, out)
    except TradelabError as exc:
        # A wrapped unexpected error keeps its traceback in the log (never on screen).
        log.error("%s: %s", type(exc).__name__, exc, exc_info=exc.__cause__ is not None)
        err.print(f"error: {one_line(exc)}", markup=False)
        return exc.exit_code
    except KeyboardInterrupt:
        log.warning("interrupted by the user")
        err.print("interrupted", markup=False)
        return 130
    except BrokenPipeError:
        # The reader went away (``| head``): what it wanted was printed; stop quietly like other CLI tools.
        _quiet_stdout()
        return 141
    except MemoryError:
        log.exception("out of memory")
        err.print("error: out of memory; use a smaller input or setting (fewer --days, --timesteps, a smaller file) "
                  f"or a machine with more RAM{_see(log_path)}", markup=False)
        return 1
    except OSError as exc:
        # Environment failures no library layer wrapped (disk full, permissions, a vanished folder).
        log.exception("operating-system error")
        where = exc.filename or "a workspace file"
        reason = exc.strerror or type(exc).__name__
        err.print(f"error: {where}: {reason}; check the folder exists, is writable and the disk has space"
                  f"{_see(log_path)}", markup=False)
        return 2
    except Exception as exc:  # the one place unexpected errors are caught: log the traceback, one line on screen
        log.exception("unexpected error")
        err.print(f"error: unexpected {type(exc).__name__}: {one_line(exc)}{_see(log_path)}", markup=False)
        return 1


def _see(log_path: Path | None) -> str:
    return f" (traceback in {log_path})" if log_path else ""


def chosen_profile(args: Any) -> str | None:
    """The run profile the command line names: ``--profile NAME``, or ``--test`` (the smoke profile); None = the
    default. The name is checked here, so an unknown one is one line (exit 2) before anything runs.

    Raises:
        ConfigError: ``--test`` with another ``--profile``, or no profile of that name (the available ones listed).
    """
    from tradelab.config import SMOKE_PROFILE
    from tradelab.config.loader import DEFAULT_CONFIG_DIR
    from tradelab.config.profile import profile_path
    from tradelab.stages import workspace_config_dir

    profile = getattr(args, "profile", None)
    if getattr(args, "test", False):
        if profile not in (None, SMOKE_PROFILE):
            raise ConfigError(f"--test names the {SMOKE_PROFILE} profile and --profile names {profile!r}; pass one "
                              f"of them")
        profile = SMOKE_PROFILE
    if profile is not None:
        profile_path(profile, workspace_config_dir(args.root, args.config_dir), DEFAULT_CONFIG_DIR)
    return profile


def _dispatch(args: Any, out: Any) -> int:
    args.profile = chosen_profile(args)
    if args.test and args.command is None:
        from tradelab.cli.commands import run_smoke_pipeline

        return run_smoke_pipeline(args, out)
    if args.command is None:
        if not sys.stdin.isatty():
            raise TradelabError(
                "the menu needs an interactive terminal and stdin is not a TTY; run a subcommand instead, "
                "e.g. `python main.py --test` or `python main.py status` (see `python main.py --help`)"
            )
        from tradelab.cli.menu import run_menu

        return run_menu(args.root, args.config_dir, out, profile=args.profile)
    from tradelab.cli.commands import run_command

    return run_command(args, out)
