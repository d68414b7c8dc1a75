"""A server for the tests that is a file of the repository, so it is the project's by its
program wherever it is started: ``python tests/apps/listen.py PORT [WORKERS]`` listens on
127.0.0.1:PORT and shares the socket with WORKERS children, each a plain ``python -c``
program working in ``/`` - nothing of the repository in its command line or working
directory, so each is the project's through its supervisor alone. Runs until stopped.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

WORKER = "import time\nwhile True: time.sleep(3600)"


def main() -> None:
    port = int(sys.argv[1])
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    for _ in range(workers):
        subprocess.Popen([sys.executable, "-c", WORKER], cwd="/", pass_fds=[server.fileno()])
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
