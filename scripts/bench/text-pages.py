#!/usr/bin/env python3
"""Which of a running process's code pages are resident, by crate.

Reads the executable's mappings from /proc/PID/maps, which of their pages
are present from /proc/PID/pagemap (needs root), and attributes each
resident page of the executable to the crates whose functions lie in it,
from the binary's symbol table (`nm`). A page shared by several crates is
split between them by bytes. Prints resident MB per mapping (code,
read-only data, ...) and the crates holding most of the resident code.

    scripts/bench/text-pages.py PID [TOP]

The pages resident after a burst are not only those the burst ran: the
kernel maps the file's cached pages around each page fault (64 KiB by
default), so a crate whose functions are spread out costs more pages than
one whose hot functions sit together.
"""
import bisect
import collections
import re
import struct
import subprocess
import sys

PAGE = 4096


def mappings(pid, exe):
    out = []
    for line in open(f"/proc/{pid}/maps"):
        parts = line.split()
        if len(parts) < 6 or parts[5] != exe:
            continue
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        out.append((lo, hi, parts[1], int(parts[2], 16)))
    return out


def present(pid, lo, hi):
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(lo // PAGE * 8)
        data = f.read((hi - lo) // PAGE * 8)
    return [bool(v >> 63 & 1) for (v,) in struct.iter_unpack("<Q", data)]


def crate_of(name):
    # Demangled Rust paths: the first path segment, past generic prefixes.
    name = name.lstrip("<&*").removeprefix("mut ").removeprefix("dyn ")
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", name)
    if m:
        return m.group(1)
    return "(C or other)"


def symbols(exe):
    text = subprocess.run(["nm", "-C", "-S", "--defined-only", exe],
                          check=True, capture_output=True, text=True).stdout
    syms = []
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if len(parts) != 4 or parts[2] not in "tTwW":
            continue
        addr, size = int(parts[0], 16), int(parts[1], 16)
        if size:
            syms.append((addr, size, crate_of(parts[3])))
    syms.sort()
    return syms


def section_offsets(exe):
    """(vaddr, file offset) of each loadable segment, to turn file offsets
    of the mapping into the addresses `nm` prints."""
    text = subprocess.run(["readelf", "-lW", exe], check=True,
                          capture_output=True, text=True).stdout
    segs = []
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "LOAD":
            segs.append((int(parts[1], 16), int(parts[2], 16), int(parts[4], 16)))
    return segs


def main():
    pid = int(sys.argv[1])
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    exe = subprocess.run(["readlink", f"/proc/{pid}/exe"], check=True,
                         capture_output=True, text=True).stdout.strip()
    segs = section_offsets(exe)
    syms = symbols(exe)
    starts = [s[0] for s in syms]
    by_crate = collections.Counter()
    for lo, hi, perms, off in mappings(pid, exe):
        pages = present(pid, lo, hi)
        print(f"{perms} {((hi - lo) >> 20):>4} MB mapped, "
              f"{sum(pages) * PAGE / 2**20:6.1f} MB resident")
        if "x" not in perms:
            continue
        for i, here in enumerate(pages):
            if not here:
                continue
            file_off = off + i * PAGE
            vaddr = next((v + file_off - o for o, v, sz in segs
                          if o <= file_off < o + sz), None)
            if vaddr is None:
                continue
            j = max(bisect.bisect_right(starts, vaddr) - 1, 0)
            covered = 0
            while j < len(syms) and syms[j][0] < vaddr + PAGE:
                a, size, crate = syms[j]
                overlap = min(a + size, vaddr + PAGE) - max(a, vaddr)
                if overlap > 0:
                    by_crate[crate] += overlap
                    covered += overlap
                j += 1
            by_crate["(between symbols)"] += max(PAGE - covered, 0)
    total = sum(by_crate.values())
    print(f"resident code: {total / 2**20:.1f} MB")
    for crate, n in by_crate.most_common(top):
        print(f"  {n / 2**20:6.2f} MB  {crate}")


if __name__ == "__main__":
    main()
