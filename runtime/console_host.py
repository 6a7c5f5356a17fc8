"""The console's host (entry point ``paywatch.console:host``): the console calls these
to get its settings and its platform, without importing the runtime.

``python -m runtime.console_host run console/app.py …`` is how ``paywatch console`` and
``paywatch up`` start the console: Streamlit in this process, with every log line, its
own and the console's, through :mod:`runtime.logs` in ``PAYWATCH_LOG_FORMAT`` at
``PAYWATCH_LOG_LEVEL``. ``streamlit run console/app.py`` leaves Streamlit's own format.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from .bootstrap import Platform
from .bootstrap import build_platform as _build
from .settings import Settings

#: the logger of what Streamlit prints (rather than logs) under ``--log-format json``
PRINTED_LOGGER = "streamlit.cli"


def settings() -> Settings:
    """Settings from the environment, read afresh (a test may change them)."""
    return Settings.from_env()


def build_platform() -> Platform:
    """The console's platform: role "console", no channel front."""
    return _build(Settings.from_env(), role="console", channels=False)


def _propagate(logger: logging.Logger) -> None:
    """Instead of Streamlit's ``setup_formatter``: no handler of its own, the root's."""
    own = getattr(logger, "streamlit_console_handler", None)
    if own is not None:
        logger.removeHandler(own)
        delattr(logger, "streamlit_console_handler")
    logger.propagate = True


def _log_printed(message: str, **_style: Any) -> None:
    """Instead of Streamlit's ``print_to_cli`` under json: a log line, not a bare one."""
    text = message.strip()
    if text:
        logging.getLogger(PRINTED_LOGGER).info("%s", text)


def route_streamlit_logs(*, printed_as_logs: bool) -> bool:
    """Send Streamlit's log lines through the root logger's handler: its loggers (each
    has a handler of its own and ``propagate = False``, set again whenever its config is
    parsed) and uvicorn's (Streamlit lets uvicorn install its default logging config).
    With ``printed_as_logs`` what it prints ("Stopping...") becomes a log line too.

    These are Streamlit internals: returns False, changing nothing, when a Streamlit
    version lacks one of them (its lines then keep Streamlit's format)."""
    from streamlit import cli_util
    from streamlit import logger as st_logger

    try:
        from streamlit.web.server.starlette import starlette_server as server
    except ImportError:
        return False
    kwargs_of = getattr(server, "_get_uvicorn_config_kwargs", None)
    known = hasattr(st_logger, "setup_formatter") and hasattr(cli_util, "print_to_cli")
    if kwargs_of is None or not known or not isinstance(getattr(st_logger, "_loggers", None), dict):
        return False
    st_logger.setup_formatter = _propagate
    for logger in list(st_logger._loggers.values()):
        _propagate(logger)
    server._get_uvicorn_config_kwargs = lambda: {**kwargs_of(), "log_config": None}
    if printed_as_logs:
        cli_util.print_to_cli = _log_printed
    return True


def run_console(argv: Sequence[str]) -> int:
    """Run ``streamlit <argv>`` (``run console/app.py …``) with paywatch's logging."""
    from .logs import JsonFormatter, configure

    handler = configure()  # PAYWATCH_LOG_FORMAT / PAYWATCH_LOG_LEVEL, as the parent's
    json_lines = isinstance(handler.formatter, JsonFormatter)
    logging.captureWarnings(True)
    if not route_streamlit_logs(printed_as_logs=json_lines):
        logging.getLogger("paywatch.console").warning(
            "this Streamlit version's log lines keep their own format"
        )
    level = logging.getLevelName(logging.getLogger().level).lower()
    args = [*argv, "--logger.level", level]
    if json_lines:  # the welcome banner is printed in pieces; the server logs its address
        args += ["--logger.hideWelcomeMessage", "true"]
    from streamlit.web import cli

    try:
        cli.main(args=args, prog_name="streamlit")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_console(sys.argv[1:]))
