"""Worker process for :mod:`trl_igrpo.rewards.math`: ``python -m trl_igrpo.rewards._math_worker``.

Protocol over stdin/stdout: each message is an 8-byte big-endian length followed by a pickle. The parent sends
``(task_id, [(gold, text, timeout), ...])`` and the worker answers ``(task_id, [Grade, ...])``
(:class:`trl_igrpo.rewards.math.Grade`). The worker runs math-verify in its main thread, so math-verify's SIGALRM
timeouts work; the parent adds a hard deadline on top.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys


def read_message(stream):
    header = stream.read(8)
    if len(header) < 8:
        return None
    (size,) = struct.unpack(">Q", header)
    return pickle.loads(stream.read(size))


def write_message(stream, obj) -> None:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack(">Q", len(payload)) + payload)
    stream.flush()


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from trl_igrpo.rewards.math import _grade_pair, _init_worker

    _init_worker()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed by libraries must not corrupt the protocol stream
    write_message(stdout, ("ready", None))
    while (message := read_message(stdin)) is not None:
        task_id, items = message
        write_message(stdout, (task_id, [_grade_pair(item) for item in items]))


if __name__ == "__main__":
    main()
