"""The HTML report renders in a real browser and shows its plots (headless Chromium).

Runs a baseline session and a current session against FakeOllama (two models, scores,
an escalation, a failure, varied latency), writes ``--llm-html``, screenshots it with
headless Chromium and checks the PNG is not blank: enough non-white pixels, and pixels
in the colours of the plots (the first model's bars and boxes, the grey baseline bars).
The PNG is kept for a person to look at.

    apt-get install -y chromium        # once
    python bench/html_render.py [--out /tmp/pytest-llm-report.png] [--chromium chromium]
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

from pytest_llm.testing import FakeOllama, RecordedRequest, Reply

SUITE = """
import pytest

def score(result):
    return float(result.content.split()[0])

@pytest.mark.llm(model="small")
@pytest.mark.parametrize("i", range(12))
def test_small(llm, i):
    llm.chat(f"small {{i}}", scorer=score)

@pytest.mark.llm(model="big")
@pytest.mark.parametrize("i", range(6))
def test_big(llm, i):
    assert llm.chat(f"big {{i}}", scorer=score).score >= {threshold}

@pytest.mark.llm(model="small", escalate_to=["big"], max_retries=0, json_mode=True)
def test_escalates(llm):
    llm.chat("escalate")
"""

PLOT_BLUE = (0x3B, 0x6F, 0xD4)  # report_html._PALETTE[0]: the first model's bars and box
BASELINE_GREY = (0xBB, 0xBB, 0xBB)


def reply(request: RecordedRequest) -> Reply:
    prompt = request.messages[-1]["content"]
    if prompt == "escalate":
        return Reply(content="not json" if request.model == "small" else '{"ok": 1}')
    i = int(prompt.split()[1])
    delay = 0.02 + 0.015 * i if request.model == "small" else 0.08 + 0.02 * i
    return Reply(content=f"{0.35 + 0.05 * i:.2f} points", first_token_delay=delay)


def session(cwd: Path, fake: FakeOllama, *args: str) -> None:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2"]
    done = subprocess.run(
        [*command, f"--llm-host={fake.url}", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    print(f"session {' '.join(args)}: {done.stdout.strip().splitlines()[-1]}")


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB(A) rows of an 8-bit RGB or RGBA PNG (standard library only)."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    if depth != 8 or color not in (2, 6):
        raise ValueError(f"unsupported PNG: bit depth {depth}, colour type {color}")
    bpp = 3 if color == 2 else 4
    raw, stride, rows = zlib.decompress(idat), width * bpp, []
    previous = bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for x in range(stride):
            left = line[x - bpp] if x >= bpp else 0
            up, corner = previous[x], previous[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                line[x] = (line[x] + predictor) & 0xFF
        rows.append(bytes(line[i] for i in range(stride) if i % bpp < 3))  # drop alpha
        previous = line
    return width, height, rows


def near(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir()) / "pytest-llm-report.png"
    )
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeOllama(reply, models=["small", "big"]) as fake:
        cwd = Path(tmp)
        baseline, html = cwd / "baseline.json", cwd / "report.html"
        (cwd / "test_render.py").write_text(SUITE.format(threshold=0.0))
        session(cwd, fake, f"--llm-report={baseline}")
        (cwd / "test_render.py").write_text(SUITE.format(threshold=0.5))  # two big tests fail now
        session(cwd, fake, f"--llm-baseline={baseline}", f"--llm-html={html}")
        shot = [args.chromium, "--headless", "--no-sandbox", "--disable-gpu"]
        shot += ["--disable-background-networking", "--hide-scrollbars", "--window-size=1400,1500"]
        shot += [f"--screenshot={args.out}", html.as_uri()]
        subprocess.run(shot, check=True, capture_output=True, timeout=120)
    width, height, rows = read_png(args.out)
    pixels = [tuple(row[i : i + 3]) for row in rows for i in range(0, len(row), 3)]
    ink = sum(1 for p in pixels if min(p) < 235) / len(pixels)
    blue = sum(1 for p in pixels if near(p, PLOT_BLUE))
    grey = sum(1 for p in pixels if near(p, BASELINE_GREY, 4))
    colours = len(set(pixels))
    print(f"screenshot {args.out}: {width}x{height}, {colours} colours")
    print(f"non-white pixels: {ink:.1%}; plot-blue pixels: {blue}; baseline-grey pixels: {grey}")
    ok = ink > 0.03 and blue > 500 and grey > 200 and colours > 50
    print("rendered with its plots: " + ("yes" if ok else "NO"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
