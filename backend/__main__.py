"""``python -m backend --dev|--production [...]``: the serve tasks without Invoke."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message} (see python -m backend --help)\n")
        raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m backend", description="Start the backend server.")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--dev", action="store_true", help="dev server: 127.0.0.1, auto-reload")
    modes.add_argument("--production", action="store_true", help="HOST/PORT/WEB_CONCURRENCY")
    parser.add_argument("--port", help="port (default: PORT, else 8000)")
    parser.add_argument("--host", help="address to bind (dev 127.0.0.1, production HOST)")
    parser.add_argument("--workers", help="production worker processes (WEB_CONCURRENCY)")
    parser.add_argument("--find-port", action="store_true", help="dev: move to a free port")
    parser.add_argument("--cleanup-port", action="store_true", help="stop the port's holder")
    parser.add_argument("--force-cleanup", action="store_true", help="--cleanup-port --force")
    parser.add_argument("--no-reload", action="store_true", help="dev: no auto-reload")
    args = parser.parse_args(argv)

    from backend import server

    if not (args.dev or args.production) and (args.cleanup_port or args.force_cleanup):
        return server.cleanup_only(args.port, force=args.force_cleanup)
    mode: server.Mode = "dev" if args.dev else "prod" if args.production else server.mode_from_env()
    return server.serve(
        mode,
        port=args.port,
        host=args.host,
        workers=args.workers,
        reload=not args.no_reload,
        find_port=args.find_port,
        cleanup_port=args.cleanup_port,
        force_cleanup=args.force_cleanup,
    )


if __name__ == "__main__":
    sys.exit(main())
