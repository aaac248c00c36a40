"""Open an HTML report in headless Chromium, as a person would, and check what it shows.

`bash scripts/install_chromium.sh` installs Chromium; without it these checks skip.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed: run `bash scripts/install_chromium.sh` (Debian package "
           "`chromium`) to check the report in a real browser",
)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Runs after every image has loaded or failed; leaves its verdict in the DOM for --dump-dom.
_IMAGE_PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const marker = document.createElement("div");
  marker.id = "image-probe";
  marker.setAttribute("data-total", String(images.length));
  marker.setAttribute("data-loaded",
    String(images.filter((i) => i.complete && i.naturalWidth > 0).length));
  marker.setAttribute("data-sizes",
    images.map((i) => i.naturalWidth + "x" + i.naturalHeight).join(","));
  document.body.appendChild(marker);
});
</script>"""


@dataclass
class _Page(HTMLParser):
    images: list[dict[str, str]] = field(default_factory=list)
    probe: dict[str, str] | None = None

    def __post_init__(self) -> None:
        super().__init__()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(values)
        elif tag == "div" and values.get("id") == "image-probe":
            self.probe = values


@dataclass
class Rendered:
    dom: str
    images: list[dict[str, str]]
    probe: dict[str, str]
    screenshot: Path


def _chromium(args: list[str], profile: Path) -> str:
    assert CHROMIUM is not None
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def render(report: Path, work: Path, height: int = 4200) -> Rendered:
    """Dump the DOM of the report (with the image probe appended) and take a screenshot."""
    work.mkdir(parents=True, exist_ok=True)
    probed = work / "probed.html"
    probed.write_text(report.read_text(encoding="utf-8").replace(
        "</body>", _IMAGE_PROBE + "</body>"), encoding="utf-8")
    dom = _chromium(["--virtual-time-budget=10000", "--dump-dom", probed.as_uri()],
                    work / "profile-dom")
    screenshot = work / "screenshot.png"
    _chromium([f"--window-size=1280,{height}", f"--screenshot={screenshot}", report.as_uri()],
              work / "profile-shot")
    page = _Page()
    page.feed(dom)
    assert page.probe is not None, "the image probe never ran: the page did not finish loading"
    return Rendered(dom, page.images, page.probe, screenshot)


def assert_report_renders(report: Path, work: Path, expected_images: int) -> Rendered:
    """Every image is an embedded PNG that decodes and that the browser displayed; nothing is
    fetched from elsewhere; the screenshot is a real, non-blank picture."""
    from PIL import Image

    text = report.read_text(encoding="utf-8")
    external = re.findall(r'(?:src|href)="(?!data:)([^"]*)"', text)
    assert not external, f"the report is not self-contained: {external}"
    rendered = render(report, work)
    assert len(rendered.images) == expected_images
    for image in rendered.images:
        assert image["src"].startswith("data:image/png;base64,"), image["src"][:60]
        assert image.get("alt")
        raw = base64.b64decode(image["src"].split(",", 1)[1], validate=True)
        assert raw.startswith(PNG_SIGNATURE)
        Image.open(io.BytesIO(raw)).verify()  # raises on a truncated or corrupt PNG
    probe = rendered.probe
    assert probe["data-total"] == probe["data-loaded"] == str(expected_images), probe
    assert all(int(size.split("x")[0]) > 100 for size in probe["data-sizes"].split(","))
    shot = Image.open(rendered.screenshot)
    assert shot.size == (1280, 4200)
    colors = shot.convert("RGB").resize((320, 1050)).getcolors(maxcolors=1 << 16)
    assert colors is None or len(colors) > 50, "the screenshot is (nearly) blank"
    return rendered
