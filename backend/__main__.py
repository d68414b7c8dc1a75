"""``python -m backend --dev|--production [...]``: the serve tasks without Invoke.

The flags and their help come from the declarations in ``backend/setting_specs.py``,
as the Invoke tasks' do; their values are checked there too, after parsing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from backend.setting_specs import HOST, SETTINGS, SWITCHES, ServeFlags, serve_flags
from backend.setting_types import Mode
from utils.errors import EXIT_USAGE, error_line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """argparse's complaint as the error contract's one escaped line, exit 2."""
        error_line(f"{message} (see python -m backend --help)")
        raise SystemExit(EXIT_USAGE)


def parser() -> argparse.ArgumentParser:
    """Every serve flag of either mode, with the help the Invoke tasks show."""
    result = _Parser(prog="python -m backend", description="Start the backend server.")
    modes = result.add_mutually_exclusive_group()
    modes.add_argument(
        "--dev", action="store_true", help=f"dev server on {HOST.default_for('dev')}, auto-reload"
    )
    read = ", ".join(s.env for s in SETTINGS if s.flag and "prod" in s.env_modes)
    modes.add_argument(
        "--production", action="store_true", help=f"production server: {read} from the environment"
    )
    switches = {switch.flag.removeprefix("--") for switch in SWITCHES}
    for name, help_text in serve_flags(None).items():
        if name in switches:
            result.add_argument(f"--{name}", action="store_true", help=help_text)
        else:
            result.add_argument(f"--{name}", help=help_text)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)

    from backend import server

    flags = ServeFlags(**{name: getattr(args, name) for name in ServeFlags._fields})
    if not (args.dev or args.production) and (flags.cleanup_port or flags.force_cleanup):
        return server.cleanup_only(flags.port, force=flags.force_cleanup)
    mode: Mode = "dev" if args.dev else "prod" if args.production else server.mode_from_env()
    return server.serve(mode, flags)


if __name__ == "__main__":
    sys.exit(main())
