"""Entry point of ``azcmagent``: parse, run one command, render its result or its AZCM error."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Sequence

from arc_agent import __version__
from arc_agent.cli import about
from arc_agent.cli.commands import Handler, available_commands
from arc_agent.cli.configfile import parse_command_line
from arc_agent.cli.context import Context
from arc_agent.cli.options import CommonOptions, flag_present, resolve
from arc_agent.cli.output import write_error, write_result
from arc_agent.cli.parser import build_parsers
from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.logsetup import configure_logging
from arc_agent.paths import AgentPaths


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``azcmagent`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    stdout, stderr = sys.stdout, sys.stderr
    # Until the arguments are parsed, decide the error format from the raw argv.
    options = CommonOptions(
        json=flag_present(args, "--json", "j"), verbose=flag_present(args, "--verbose", "v")
    )
    logger: logging.Logger | None = None
    try:
        parsers = build_parsers(available_commands())
        namespace = parse_command_line(parsers[""], args)
        options = resolve(namespace)
        paths = AgentPaths.from_env(os.environ)
        # Root's runs on an installed agent are logged to azcmagent.log (which command, and its
        # outcome; never the arguments: they may hold secrets).
        installed = os.geteuid() == 0 and paths.log_dir.is_dir()
        logger = configure_logging(
            verbose=options.verbose,
            stream=stderr if options.log_stderr else None,
            log_file=paths.log_dir / "azcmagent.log" if installed else None,
        )
        ctx = Context(
            args=namespace,
            options=options,
            paths=paths,
            parsers=parsers,
        )
        handler: Handler
        if namespace.show_version:
            handler = about.version
        elif namespace.command is None:
            handler = about.help_text
        else:
            handler = namespace.handler
        logger.info("azcmagent %s: running %s", __version__, namespace.command or "help")
        result = handler(ctx)
        write_result(result, as_json=options.json, stdout=stdout)
        return result.exit_code
    except AzcmError as error:
        if logger is not None:
            logger.error("Exit Code: %s", error)
        write_error(error, as_json=options.json, stdout=stdout, stderr=stderr)
        return error.code
    except KeyboardInterrupt:
        cancelled = AzcmError(ErrorCode.USER_CANCELLED, "cancelled by the user")
        write_error(cancelled, as_json=options.json, stdout=stdout, stderr=stderr)
        return cancelled.code
    except Exception as exc:
        if options.verbose:
            traceback.print_exc(file=stderr)
        unexpected = AzcmError(ErrorCode.UNKNOWN, f"unexpected error: {exc.__class__.__name__}: {exc}")
        write_error(unexpected, as_json=options.json, stdout=stdout, stderr=stderr)
        return unexpected.code


if __name__ == "__main__":
    sys.exit(main())
