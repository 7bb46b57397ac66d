"""`python -m config.serve --workers 2`: uvicorn processes that share a port through SO_REUSEPORT.

`uvicorn --workers N` has all workers accept on one socket, and stations keep their
connections open: one worker can end up with most stations (seen: 55% against 12% CPU with 8
stations) while the other idles. With a SO_REUSEPORT socket per worker the kernel spreads
connections evenly. Linux only; elsewhere use `uvicorn --workers`.
"""

import argparse
import signal
import socket
import subprocess
import sys
import time


def reuseport_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve_child(fd: int, *, access_log: bool) -> None:
    """One worker on an inherited socket. (`uvicorn --fd` would take it for a Unix socket and
    leave Nagle's algorithm on: 40 ms stalls on every response.)"""
    import uvicorn

    sock = socket.socket(fileno=fd)
    config = uvicorn.Config("config.asgi:application", access_log=access_log, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log every request (uvicorn's access log, as JSON lines); off by default",
    )
    parser.add_argument("--child-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_fd is not None:
        serve_child(args.child_fd, access_log=args.access_log)
        return

    processes = []
    for _ in range(args.workers):
        sock = reuseport_socket(args.host, args.port)
        command = [sys.executable, "-m", "config.serve", "--child-fd", str(sock.fileno())]
        command += ["--access-log"] if args.access_log else []
        processes.append(subprocess.Popen(command, pass_fds=[sock.fileno()]))
        sock.close()  # the child keeps its copy
    print(f"{args.workers} workers on http://{args.host}:{args.port}/ (SO_REUSEPORT)", flush=True)

    def stop(*_):
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    stop()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    sys.exit(max(process.returncode or 0 for process in processes))


if __name__ == "__main__":
    main()
