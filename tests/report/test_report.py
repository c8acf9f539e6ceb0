"""selfsup report on a real (short) digits run: a self-contained HTML page with every plot."""

import shutil
import subprocess
from html.parser import HTMLParser

import pytest

import selfsup
from selfsup.config import build_config
from selfsup.report import write_report

pytestmark = pytest.mark.slow  # end-to-end training runs

pytest.importorskip("matplotlib")


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.external = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("alt"))
            if not attrs.get("src", "").startswith("data:image/png;base64,"):
                self.external.append(attrs.get("src"))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    sets = ["augment.size=8", "train.knn_every=1", "train.log_every=2"]
    for seed in (0, 1):
        selfsup.train(build_config("byol-digits", sets + [f"seed={seed}"], epochs=2), out=root / f"run{seed}")
    return root / "run0", root / "run1"


def test_report_is_one_self_contained_page_with_every_plot(two_runs, tmp_path):
    out = write_report(list(two_runs), out=tmp_path / "report.html")
    page = out.read_text()
    parser = _Images()
    parser.feed(page)
    assert parser.external == []  # every image is embedded
    for alt in ("training curves", "views", "map", "confusion"):
        assert alt in parser.images, alt
    assert parser.images.count("views") == 2  # one section per run
    assert "run0" in page and "run1" in page and "config.yaml" in page


def test_report_of_an_unfinished_run_says_what_it_skipped(tmp_path):
    run = tmp_path / "part"
    selfsup.train(build_config("byol-digits", ["augment.size=8", "train.stop_after=1"], epochs=3), out=run)
    page = write_report([run]).read_text()
    assert "no encoder (unfinished run)" in page


@pytest.mark.skipif(not shutil.which("chromium"), reason="headless Chromium is not installed")
def test_report_renders_in_headless_chromium(two_runs, tmp_path):
    out = write_report(list(two_runs), out=tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1400,2400",
            f"--screenshot={shot}",
            out.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 50_000  # a blank page is a few kB


def test_report_of_a_masked_vit_run_shows_reconstructions_and_attention_maps(two_runs, tmp_path):
    run = tmp_path / "gmml"
    sets = ["augment.size=8", "data.subset=64", "train.batch_size=32"]
    selfsup.train(build_config("gmml-digits", sets, epochs=1), out=run)
    page = write_report([run, two_runs[0]], out=tmp_path / "report.html").read_text()
    parser = _Images()
    parser.feed(page)
    assert parser.images.count("reconstructions") == 1 and parser.images.count("attention") == 1
    assert "run0: no reconstructions (byol does not reconstruct images)" in page
    assert "run0: no attention maps (resnet-small is not a vision transformer)" in page
