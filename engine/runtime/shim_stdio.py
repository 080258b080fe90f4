"""The shim's container output: stdio pipes (or the pty) -> <id>-json.log. Stdlib only.

A mixin of `shim.Shim` (imported by path as its sibling), which provides `streams`
(fd -> [stream name, partial line]), `stdin_w`, `log_fd`, `watch` and `unwatch`. Lines are
written in Docker's json-file format, one JSON object per line; a line longer than
LOG_LINE_MAX is cut into entries of that size, and a partial last line is written when its
stream closes.
"""

from __future__ import annotations

import os

import state as st

LOG_LINE_MAX = 16 * 1024


class Output:
    streams: dict[int, list]
    stdin_w: int
    log_fd: int

    def on_output(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: the pty's last holder closed it
            data = b""
        if data:
            self.log(fd, data)
        else:
            self.close_stream(fd)

    def log(self, fd: int, data: bytes) -> None:
        entry = self.streams[fd]
        lines = (entry[1] + data).split(b"\n")
        entry[1] = lines.pop()
        out = [self.entry(entry[0], line + b"\n") for line in lines]
        while len(entry[1]) >= LOG_LINE_MAX:
            out.append(self.entry(entry[0], entry[1][:LOG_LINE_MAX]))
            entry[1] = entry[1][LOG_LINE_MAX:]
        if out:
            os.write(self.log_fd, b"".join(out))

    @staticmethod
    def entry(stream: str, raw: bytes) -> bytes:
        text = raw.decode("utf-8", "replace")
        return (st.dumps({"log": text, "stream": stream, "time": st.now()}) + "\n").encode()

    def close_stream(self, fd: int) -> None:
        entry = self.streams.pop(fd, None)
        if entry and entry[1]:
            os.write(self.log_fd, self.entry(entry[0], entry[1]))
        self.unwatch(fd)
        os.close(fd)

    def drain(self) -> None:
        for fd in list(self.streams):
            while True:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    break
                except OSError:
                    data = b""
                if not data:
                    break
                self.log(fd, data)
            self.close_stream(fd)
        if self.stdin_w >= 0:
            os.close(self.stdin_w)
            self.stdin_w = -1
