"""The project documents itself: docs/ is in the repository, generated where it can be, and current."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metabench import cli, docs
from metabench.gl import rendering_unavailable
from metabench.tasks import metabench_ids

REPO = Path(__file__).resolve().parents[1]


def test_the_families_index_is_deterministic_and_current() -> None:
    text = docs.families_markdown()
    assert text == docs.families_markdown()
    committed = (REPO / "docs" / "families.md").read_text(encoding="utf-8")
    assert committed == text, "docs/families.md is stale: run `make docs` (or `metabench docs --no-pictures`)"


def test_docs_check_passes_on_the_committed_docs(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["docs", "--check", "--out", str(REPO / "docs")]) == 0, capsys.readouterr().err


def test_docs_check_names_a_stale_index_and_a_missing_picture(tmp_path: Path) -> None:
    (tmp_path / "families.md").write_text("# old\n", encoding="utf-8")
    problems = docs.write_docs(tmp_path, check=True)
    assert any("families.md differs" in p and "make docs" in p for p in problems)
    assert any(p.endswith("PointNav-v0.png is missing") for p in problems)


def test_every_registered_id_is_documented_with_a_picture() -> None:
    text = (REPO / "docs" / "families.md").read_text(encoding="utf-8")
    for env_id in metabench_ids():
        assert docs.short_id(env_id) in text, f"{env_id} is not in docs/families.md: run `make docs`"
    sections = docs.sections()
    assert sum(len(s.ids) for s in sections) == len(metabench_ids())
    pictured = {i for s in sections for i in s.pictured}
    assert len(pictured) < len(sections)  # variants share their family's picture, ML1 has three
    for env_id in pictured:
        assert docs.picture_path(env_id, REPO / "docs" / "img").is_file()


def local_targets(markdown: str) -> list[str]:
    """Relative link and image targets of a Markdown text (no URLs, no in-page anchors)."""
    targets = re.findall(r"\]\(([^)\s]+)\)", markdown) + re.findall(r'src="([^"]+)"', markdown)
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:|#", t)]


@pytest.mark.parametrize(
    "page", ["README.md", "docs/families.md", "docs/architecture.md", "docs/agents/README.md"]
)
def test_pages_point_only_at_files_in_the_repository(page: str) -> None:
    path = REPO / page
    text = path.read_text(encoding="utf-8")
    outside = "../" + "shared"  # the steering folder beside a checkout; spelt so that no file names it
    assert outside not in text and "DESIGN.md" not in text
    for target in local_targets(text):
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(REPO), f"{page} points outside the repository: {target}"
        assert resolved.exists(), f"{page} points at {target}, which does not exist"


def test_the_readme_shows_the_family_pictures() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    shown = set(docs.pictures_in(readme))
    wanted = ("PointNav-v0", "HalfCheetahVel-v0", "ML1-reach-v0")
    assert {f"docs/img/{name}.png" for name in wanted} <= shown


def open_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def test_render_writes_a_png_of_the_asked_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # PointNav draws with numpy: it renders with every OpenGL backend, "disable" included.
    out = tmp_path / "pics" / "point.png"
    assert cli.main(["render", "metabench/PointNav-v0", "--task", "3", "-o", str(out)]) == 0
    assert open_png(out).shape == (128, 128, 3)
    assert "(128x128)" in capsys.readouterr().out
    assert cli.main(["render", "metabench/PointNav-v0", "--task", "3", "-o", str(out), "--size", "64"]) == 0
    small = open_png(out)
    assert small.shape == (64, 64, 3) and small.std() > 0
    # The same task, steps and seed give the same picture.
    again = tmp_path / "again.png"
    assert cli.main(["render", "metabench/PointNav-v0", "--task", "3", "-o", str(again), "--size", "64"]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_render_of_a_mujoco_family(tmp_path: Path) -> None:
    reason = rendering_unavailable()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "cheetah.png"
    assert cli.main(["render", "metabench/HalfCheetahVel-v0", "--task", "1", "-o", str(out)]) == 0
    frame = open_png(out)
    assert frame.shape == (480, 480, 3) and frame.std() > 0  # Gymnasium's MuJoCo default size


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["render", "metabench/PointNav-v0", "--task", "20", "-o", "x.png"], "--task 0 to 19"),
        (["render", "metabench/PointNav-v0", "--split", "val", "-o", "x.png"], "unknown split 'val'"),
        (["render", "metabench/PointNav-v0", "-o", "x.jpg"], "path ending in .png"),
        (["render", "metabench/PointNav-v0", "-o", "x.png", "--camera", "top"], "takes no camera name"),
        (["render", "metabench/NoSuch-v0", "-o", "x.png"], "unknown env id"),
    ],
)
def test_render_refuses_bad_input_in_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("metabench: error:") and message in err and "\n" not in err
    assert not (tmp_path / "x.png").exists()


def test_render_cannot_write_into_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["render", "metabench/PointNav-v0", "-o", str(blocker / "x.png")]) == 2
    assert "not a writable directory" in capsys.readouterr().err
