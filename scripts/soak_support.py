"""What both soaks (soak_steady.Soak, soak_churn.ChurnSoak) measure a running Envoy with: its RSS and
the wasm VMs' linear memories, from /proc; and a free loopback port."""

import socket
from pathlib import Path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0



def wasm_memory_kib(pid):
    """The wasm VMs' linear memories, from /proc/<pid>/smaps: V8 reserves each memory with an
    8 GiB guard region (PROT_NONE), and the memory itself is the read-write anonymous mapping
    right below it. Returns (total size KiB, total resident KiB, number of memories); size only
    grows (memory.grow), so it is what a leak inside the VMs would move."""
    maps, current = [], None
    try:
        lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError:
        return None, None, 0
    for line in lines:
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":") and len(fields) >= 5:
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            current = {"lo": lo, "hi": hi, "perms": fields[1], "anonymous": len(fields) == 5, "rss": 0}
            maps.append(current)
        elif fields and fields[0] == "Rss:" and current is not None:
            current["rss"] = int(fields[1])
    size = rss = count = 0
    for below, guard in zip(maps, maps[1:]):
        if (guard["hi"] - guard["lo"] >= 4 << 30 and guard["perms"] == "---p" and below["hi"] == guard["lo"]
                and below["anonymous"] and below["perms"] == "rw-p"):
            size += (below["hi"] - below["lo"]) >> 10
            rss += below["rss"]
            count += 1
    return size, rss, count
