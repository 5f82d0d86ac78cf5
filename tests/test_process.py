"""The cached process id follows a fork: a child never uses its parent's store connection or pool."""

from __future__ import annotations

import os

from app import process


def test_a_forked_child_knows_its_own_id():
    assert process.pid() == os.getpid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report what it sees, and leave without running pytest's exit
        os.write(write, f"{process.pid()} {os.getpid()}".encode())
        os._exit(0)
    os.close(write)
    seen = os.read(read, 100).decode().split()
    os.waitpid(child, 0)
    assert seen[0] == seen[1] == str(child)
    assert process.pid() == os.getpid() != child
