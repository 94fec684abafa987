"""Blank the CUDA machine code for other GPUs in a shared library's fatbin, keeping one architecture.

vLLM's wheel carries cubins for every supported architecture; the device payload must stay under the
64 MiB a device call can send. Zeroed cubins compress to nothing, the ELF layout is unchanged (offsets
and sizes stay valid), and PTX entries are kept so a mismatched GPU would still JIT rather than crash.
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections import Counter
from pathlib import Path

FATBIN_MAGIC = 0xBA55ED50
KIND_PTX, KIND_CUBIN = 1, 2


def elf_sections(data: bytes | bytearray) -> dict[str, tuple[int, int]]:
    """Section name -> (file offset, size) of a little-endian ELF64 file."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise ValueError("not an ELF64 file")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = []
    for i in range(shnum):
        name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        headers.append((name, offset, size))
    strtab = headers[shstrndx][1]
    out = {}
    for name, offset, size in headers:
        end = data.index(b"\0", strtab + name)
        out[data[strtab + name : end].decode()] = (offset, size)
    return out


def blank_other_cubins(path: Path, keep_arch: int) -> Counter[str]:
    """Zero every cubin whose sm architecture is not ``keep_arch``; returns bytes per (kind, arch)."""
    data = bytearray(path.read_bytes())
    offset, size = elf_sections(data)[".nv_fatbin"]
    pos, end = offset, offset + size
    seen: Counter[str] = Counter()
    while pos < end:
        magic, _version, header_size, body_size = struct.unpack_from("<IHHQ", data, pos)
        if magic != FATBIN_MAGIC:
            pos += 8  # containers are 8-byte aligned; skip the padding between them
            continue
        entry, body_end = pos + header_size, pos + header_size + body_size
        while entry < body_end:
            kind, _unknown, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            arch = struct.unpack_from("<I", data, entry + 28)[0]
            label = "ptx" if kind == KIND_PTX else "cubin" if kind == KIND_CUBIN else f"kind{kind}"
            if kind == KIND_CUBIN and arch != keep_arch:
                start = entry + entry_header
                data[start : start + payload] = bytes(payload)
                seen[f"zeroed cubin sm_{arch}"] += payload
            else:
                seen[f"kept {label} sm_{arch}"] += payload
            entry += entry_header + payload
        pos = body_end
    path.write_bytes(data)
    return seen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("library", type=Path)
    ap.add_argument("--keep-arch", type=int, default=90, help="sm architecture to keep (90 = Hopper)")
    args = ap.parse_args(argv)
    for label, nbytes in sorted(blank_other_cubins(args.library, args.keep_arch).items()):
        print(f"{args.library.name}: {label}: {nbytes / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
