"""Which TCP ports a process tree listens on, and on which addresses (from /proc, Linux only)."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path


def process_tree(root: int) -> set[int]:
    """``root`` and all its living descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo += children.get(pid, [])
    return tree


def _socket_inodes(pids: set[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    return inodes


def _decode(address: str, v6: bool) -> str:
    raw = bytes.fromhex(address)
    if not v6:
        return socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(address, 16)))
    words = struct.unpack("<4I", raw)
    return socket.inet_ntop(socket.AF_INET6, struct.pack(">4I", *words))


def listening(pids: set[int]) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket owned by ``pids``."""
    inodes = _socket_inodes(pids)
    found = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in lines:
            cols = row.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "0A" and inode in inodes:
                address, port = local.split(":")
                found.append((_decode(address, v6), int(port, 16)))
    return found
