"""Checks of the real-model lane's llama-cpp-python build (used by scripts/real-model.sh).

    python scripts/real_model_build.py portable WHEEL
        exit 0 when no shared library in WHEEL holds an AVX-512 or AMX instruction (scanned
        with objdump; skipped with a note when objdump is missing), 1 naming the first found.
    VENV/bin/python scripts/real_model_build.py installed-from WHEEL
        exit 0 when the llama_cpp libraries installed for this Python are byte for byte those
        of WHEEL, 1 saying which differs (another build, e.g. a native one from pip's cache).

The lane builds with GGML_NATIVE=OFF and AVX-512/AMX off, so the code does not depend on the
CPU that compiles it: some VMs advertise AMX in /proc/cpuinfo but trap it, and a native build
dies there with SIGSEGV in ggml_backend_amx_mul_mat on its first inference.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import io
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

DIST = "llama_cpp_python"
# EVEX-only registers (zmm, xmm/ymm16-31, mask registers) mean AVX-512; tmm and tile
# configuration mean AMX
NOT_PORTABLE = re.compile(
    r"%zmm\d|%[xy]mm(?:1[6-9]|2\d|3[01])\b|%k[0-7]\b|%tmm\d|\b(?:ldtilecfg|sttilecfg|tilerelease)\b"
)
SHARED_LIBRARY = re.compile(r"\.so(?:\.\d+)*$")


def libraries(record: str) -> dict[str, str]:
    """RECORD rows of the shared libraries: path -> ``sha256=...``."""
    rows = csv.reader(io.StringIO(record))
    return {row[0]: row[1] for row in rows if len(row) >= 2 and SHARED_LIBRARY.search(row[0])}


def wheel_record(wheel: zipfile.ZipFile) -> str:
    names = [n for n in wheel.namelist() if n.endswith(".dist-info/RECORD")]
    if len(names) != 1:
        sys.exit(f"{wheel.filename}: expected one .dist-info/RECORD, found {len(names)}")
    return wheel.read(names[0]).decode()


def sha256(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def portable(wheel_path: str) -> int:
    objdump = shutil.which("objdump")
    if objdump is None:
        print("objdump not found: the instruction scan of the build is skipped")
        return 0
    with zipfile.ZipFile(wheel_path) as wheel, tempfile.TemporaryDirectory() as tmp:
        seen: set[str] = set()
        libs = sorted(libraries(wheel_record(wheel)))
        if not libs:
            print(f"{wheel_path}: no shared libraries in this wheel", file=sys.stderr)
            return 1
        for name in libs:
            data = wheel.read(name)
            digest = sha256(data)
            if digest in seen:  # lib/libx.so, .so.0 and .so.0.1 are copies of one file
                continue
            seen.add(digest)
            path = Path(tmp, "lib.so")
            path.write_bytes(data)
            found = scan(objdump, path)
            if found:
                print(
                    f"{name} in {wheel_path} holds AVX-512/AMX code ({found.strip()}): it was "
                    "not built portably and may crash on CPUs that trap those instructions",
                    file=sys.stderr,
                )
                return 1
    print(f"no AVX-512 or AMX instruction in the {len(seen)} libraries of {Path(wheel_path).name}")
    return 0


def scan(objdump: str, path: Path) -> str | None:
    """The first disassembled line using AVX-512 or AMX, or None."""
    with subprocess.Popen(
        [objdump, "-d", "--no-show-raw-insn", str(path)], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if NOT_PORTABLE.search(line):
                proc.kill()
                return line
    if proc.returncode != 0:
        sys.exit(f"objdump failed on {path} (exit {proc.returncode})")
    return None


def installed_from(wheel_path: str) -> int:
    with zipfile.ZipFile(wheel_path) as wheel:
        expected = libraries(wheel_record(wheel))
    try:
        dist = importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError:
        print(f"{DIST} is not installed for {sys.executable}")
        return 1
    for name, digest in sorted(expected.items()):
        path = Path(str(dist.locate_file(name)))
        try:
            actual = sha256(path.read_bytes())
        except OSError:
            print(f"{path} is missing: {DIST} {dist.version} is not the build {wheel_path}")
            return 1
        if actual != digest:
            print(f"{path} differs from {wheel_path}: {DIST} {dist.version} is another build")
            return 1
    print(f"{DIST} {dist.version} is installed from {Path(wheel_path).name}")
    return 0


def main(argv: list[str]) -> int:
    commands = {"portable": portable, "installed-from": installed_from}
    if len(argv) != 2 or argv[0] not in commands:
        print(f"usage: {sys.argv[0]} {{portable|installed-from}} WHEEL", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
