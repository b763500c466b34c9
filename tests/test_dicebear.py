"""DiceBear task builder: layout, sizes, determinism, held-out separation, attribution.

Renders 2 styles x 3 images at 32 px (well under a second once the npm packages are installed;
the first build in a fresh checkout runs `npm ci` in tools/dicebear, which needs the npm registry).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from meta_core.app import dicebear
from meta_core.app.dicebear import HELD_OUT_STYLES, DataBuildError, build_dicebear_tasks

NO_NODE = "Node.js (`node`) is not on PATH; install Node.js 18+ with npm to run the DiceBear builder tests"
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason=NO_NODE)

TRAIN_STYLE = "adventurer"  # transparent background by default, so the chosen colour shows
HELDOUT_STYLE = "micah"
ARGS = dict(count_per_style=3, resolution=32, seed=7, background="#102030", styles=[TRAIN_STYLE, HELDOUT_STYLE])


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    if shutil.which("node") is None:
        pytest.skip(NO_NODE)
    out = tmp_path_factory.mktemp("dicebear") / "out"
    # The first call in a fresh checkout also runs `npm ci` in tools/dicebear.
    return out, build_dicebear_tasks(out, **ARGS)


def test_heldout_constant_is_the_agreed_list():
    assert set(HELD_OUT_STYLES) == {
        "micah", "lorelei", "lorelei-neutral", "pixel-art", "pixel-art-neutral", "bottts", "bottts-neutral", "thumbs",
    }
    assert len(HELD_OUT_STYLES) == 8 and isinstance(HELD_OUT_STYLES, tuple)


@needs_node
def test_layout_separates_train_and_heldout(built):
    out, manifest = built
    files = sorted(_files(out))
    assert files == [
        "ATTRIBUTION.json",
        "ATTRIBUTION.md",
        *(f"heldout/{HELDOUT_STYLE}/{i:05d}.png" for i in range(3)),
        *(f"train/{TRAIN_STYLE}/{i:05d}.png" for i in range(3)),
    ]
    assert manifest["train_styles"] == [TRAIN_STYLE]
    assert manifest["heldout_styles"] == [HELDOUT_STYLE]
    assert manifest["images"] == 6
    assert manifest["styles"][TRAIN_STYLE]["dir"] == str(out.resolve() / "train" / TRAIN_STYLE)
    assert manifest["styles"][HELDOUT_STYLE]["split"] == "heldout"


@needs_node
def test_pngs_have_the_requested_size_and_background(built):
    out, _ = built
    for path in out.rglob("*.png"):
        with Image.open(path) as im:
            assert im.size == (32, 32), path
            rgb = im.convert("RGB")
            # Both styles leave the corners transparent, so the solid background shows there.
            assert rgb.getpixel((0, 0)) == (0x10, 0x20, 0x30), path
            assert len(rgb.getcolors(maxcolors=32 * 32)) > 2, f"{path} looks blank"
    # Different indices give different avatars.
    pngs = [p.read_bytes() for p in sorted((out / "train" / TRAIN_STYLE).glob("*.png"))]
    assert len(set(pngs)) == 3


@needs_node
def test_same_arguments_give_byte_identical_files(built, tmp_path):
    out, _ = built
    again = tmp_path / "again"
    build_dicebear_tasks(again, **ARGS)
    assert _files(again) == _files(out)  # ATTRIBUTION files included: they hold no time or path


@needs_node
def test_random_background_varies_per_image_and_is_reproducible(tmp_path):
    args = {**ARGS, "background": "random", "styles": [TRAIN_STYLE], "count_per_style": 12}
    m = build_dicebear_tasks(tmp_path / "a", **args)
    again = build_dicebear_tasks(tmp_path / "b", **args)
    assert m["background"] == "random"
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    corners = []
    for path in sorted(Path(m["styles"][TRAIN_STYLE]["dir"]).glob("*.png")):
        with Image.open(path) as im:
            corners.append(im.convert("RGB").getpixel((0, 0)))
    assert len(set(corners)) >= 5, corners  # adventurer leaves its corners transparent
    assert (255, 255, 255) in corners and any(c != (255, 255, 255) for c in corners)
    assert "drawn per image" in (tmp_path / "a" / "ATTRIBUTION.md").read_text(encoding="utf-8")
    assert again["images"] == 12


@needs_node
def test_seed_changes_images_and_smaller_count_is_a_prefix(built, tmp_path):
    out, _ = built
    other = build_dicebear_tasks(tmp_path / "s8", **{**ARGS, "seed": 8, "styles": [TRAIN_STYLE]})
    a = (out / "train" / TRAIN_STYLE / "00000.png").read_bytes()
    assert (Path(other["styles"][TRAIN_STYLE]["dir"]) / "00000.png").read_bytes() != a
    prefix = build_dicebear_tasks(tmp_path / "c1", **{**ARGS, "count_per_style": 1, "styles": [TRAIN_STYLE]})
    assert (Path(prefix["styles"][TRAIN_STYLE]["dir"]) / "00000.png").read_bytes() == a


@needs_node
def test_rerun_with_smaller_count_removes_stale_images(tmp_path):
    out = tmp_path / "out"
    build_dicebear_tasks(out, **{**ARGS, "styles": [TRAIN_STYLE]})
    build_dicebear_tasks(out, **{**ARGS, "styles": [TRAIN_STYLE], "count_per_style": 2})
    assert sorted(p.name for p in (out / "train" / TRAIN_STYLE).iterdir()) == ["00000.png", "00001.png"]


@needs_node
def test_include_heldout_false_writes_no_heldout_folder(tmp_path):
    m = build_dicebear_tasks(tmp_path / "out", **{**ARGS, "styles": [TRAIN_STYLE]}, include_heldout=False)
    assert not (tmp_path / "out" / "heldout").exists()
    assert m["heldout_styles"] == []
    with pytest.raises(DataBuildError, match="held out"):
        build_dicebear_tasks(tmp_path / "bad", **ARGS, include_heldout=False)


@needs_node
def test_attribution_names_creator_and_license_of_every_style(built):
    out, manifest = built
    att = json.loads((out / "ATTRIBUTION.json").read_text(encoding="utf-8"))
    assert att["dicebear_version"].startswith("9.")
    assert manifest["dicebear_version"] == att["dicebear_version"]
    assert set(att["styles"]) == {TRAIN_STYLE, HELDOUT_STYLE}
    for style, s in att["styles"].items():
        assert s["title"] and s["creator"] and s["source"], style
        assert s["license"]["name"] and s["license"]["url"].startswith("http"), style
    assert att["styles"][HELDOUT_STYLE]["split"] == "heldout"
    assert att["styles"][TRAIN_STYLE]["license"]["name"] == "CC BY 4.0"
    md = (out / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for s in att["styles"].values():
        assert s["creator"] in md and s["license"]["url"] in md


@needs_node
def test_unknown_style_is_a_typed_error_listing_the_known_ones(tmp_path):
    with pytest.raises(DataBuildError, match=r"unknown style\(s\) not-a-style.*adventurer"):
        build_dicebear_tasks(tmp_path / "out", **{**ARGS, "styles": ["not-a-style"]})


@needs_node
def test_main_cli(tmp_path, capsys):
    rc = dicebear.main(["--out", str(tmp_path / "cli"), "--count", "2", "--resolution", "16", "--styles", TRAIN_STYLE])
    assert rc == 0
    assert "2 images" in capsys.readouterr().out
    assert len(list((tmp_path / "cli" / "train" / TRAIN_STYLE).glob("*.png"))) == 2


# These fail before Node.js is needed, so they run everywhere.

def test_missing_node_says_how_to_install_it(tmp_path):
    with pytest.raises(DataBuildError, match=r"Node.js not found.*Install Node.js 18"):
        build_dicebear_tasks(tmp_path / "out", **ARGS, node="no-such-node-binary-xyz")


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ({"background": "white"}, "not a hex colour"),
        ({"resolution": 4}, r"resolution must be in 8\.\.4096"),
        ({"count_per_style": 0}, "count_per_style must be >= 1"),
        ({"count_per_style": True}, "count_per_style must be an integer"),
        ({"seed": -1}, "seed must be in"),
        ({"styles": "micah"}, r"write \['micah'\]"),
    ],
)
def test_bad_arguments_are_typed_errors(tmp_path, override, pattern):
    with pytest.raises(DataBuildError, match=pattern):
        build_dicebear_tasks(tmp_path / "out", **{**ARGS, **override})
