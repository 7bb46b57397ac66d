from pathlib import Path

import numpy as np
import pytest

from vision.datasets import (
    DatasetError,
    Item,
    read_folder,
    read_manifest,
    read_manifest_report,
    split_items,
    write_manifest,
)
from vision.images import encode_jpeg, encode_png

# shared/ sits beside the repository (in development and in CI's fresh clone alike).
_CANDIDATES = [Path(__file__).resolve().parents[3] / "shared", Path("/work/shared")]
SHARED = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0]) / "datasets"
MAGNETIC = SHARED / "magnetic_tile_defect" / "manifest.csv"
PHONES = SHARED / "msd_phone_screen_subset" / "manifest.csv"


def _image(path: Path, width: int = 12, height: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((height, width, 3), 40, np.uint8)
    path.write_bytes(encode_png(pixels) if path.suffix == ".png" else encode_jpeg(pixels))
    return path


def _mask(path: Path, width: int = 12, height: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((height, width), bool)
    mask[2:4, 3:9] = True
    path.write_bytes(encode_png(mask))
    return path


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    _image(tmp_path / "images" / "a.png")
    _image(tmp_path / "images" / "b.jpg")
    _mask(tmp_path / "masks" / "b.png")
    (tmp_path / "manifest.csv").write_text(
        "file,label,defect_type,mask_file,source_path\n"
        "images/a.png,ok,none,,somewhere/a.png\n"
        "images/b.jpg,defect,scratch,masks/b.png,somewhere/b.jpg\n"
    )
    return tmp_path / "manifest.csv"


def test_read_manifest(dataset: Path):
    ok, defect = read_manifest(dataset)
    assert ok.label == "ok" and ok.defect_type == "" and ok.mask_path is None
    assert ok.path == dataset.parent / "images" / "a.png"
    assert defect.label == "defect" and defect.defect_type == "scratch"
    assert defect.load_image().shape == (8, 12, 3)
    mask = defect.load_mask()
    assert mask.dtype == bool and mask.shape == (8, 12) and mask.sum() == 12
    assert ok.load_mask() is None


def test_manifest_problems_are_reported_together_with_lines(dataset: Path):
    dataset.write_text(
        "file,label,defect_type,mask_file\n"
        "images/a.png,ok,,\n"
        "images/a.png,ok,,\n"
        "images/missing.png,defect,scratch,\n"
        "images/b.jpg,broken,,\n"
        "images/b.jpg,defect,scratch,masks/none.png\n"
    )
    with pytest.raises(DatasetError) as caught:
        read_manifest(dataset)
    message = str(caught.value)
    assert str(dataset) in message
    assert "line 3: images/a.png is listed again (first on line 2)" in message
    assert "line 4: image images/missing.png not found" in message
    assert "line 5: label 'broken' is not ok or defect" in message
    assert "line 6: mask masks/none.png not found" in message
    assert len(caught.value.problems) == 5  # line 6 is also a repeat of b.jpg


def test_manifest_report_keeps_the_good_rows(dataset: Path):
    dataset.write_text(
        "file,label,defect_type,mask_file\nimages/a.png,ok,,\nimages/gone.png,ok,,\n"
    )
    items, errors = read_manifest_report(dataset)
    assert [item.path.name for item in items] == ["a.png"]
    assert errors == ["line 3: image images/gone.png not found"]


def test_manifest_missing_columns(tmp_path: Path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("image,class\na.png,ok\n")
    with pytest.raises(DatasetError, match="missing column"):
        read_manifest(manifest)
    with pytest.raises(DatasetError, match="missing column"):
        read_manifest_report(manifest)
    with pytest.raises(DatasetError, match="cannot read"):
        read_manifest(tmp_path / "absent.csv")


def test_write_manifest_round_trips_groups_and_boxes(dataset: Path, tmp_path: Path):
    items = read_manifest(dataset)
    boxed = Item(label="defect", path=items[0].path, boxes=((1, 2, 5, 6),), group="phone-7")
    out = write_manifest([boxed, items[1]], tmp_path / "out" / "manifest.csv")
    header = out.read_text().splitlines()[0]
    assert header == "file,label,defect_type,mask_file,group,boxes"
    again = read_manifest(out)
    assert again[0] == boxed
    assert again[1] == items[1]
    assert again[0].load_mask().sum() == 16  # the box, filled in


def test_write_manifest_refuses_in_memory_items(tmp_path: Path):
    item = Item(label="ok", image=np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="no file"):
        write_manifest([item], tmp_path / "m.csv")


def test_in_memory_item_mask_and_boxes():
    image = np.zeros((6, 10, 3), np.uint8)
    mask = np.zeros((6, 10), bool)
    mask[1, 1] = True
    assert Item(label="defect", image=image, mask=mask).load_mask().sum() == 1
    from_boxes = Item(label="defect", image=image, boxes=((8, 4, 20, 20),)).load_mask()
    assert from_boxes.shape == (6, 10) and from_boxes.sum() == 4  # clipped to the image
    with pytest.raises(ValueError):
        Item(label="maybe", image=image)
    with pytest.raises(ValueError):
        Item(label="ok")


def test_read_folder(tmp_path: Path):
    _image(tmp_path / "good" / "g1.png")
    _image(tmp_path / "defect" / "d0.png")
    _image(tmp_path / "defect" / "crack" / "d1.jpg")
    _image(tmp_path / "Scratch" / "d2.png")
    (tmp_path / "defect" / "notes.txt").write_text("not an image")
    _mask(tmp_path / "masks" / "d1.png")
    items = {item.path.name: item for item in read_folder(tmp_path)}
    assert set(items) == {"g1.png", "d0.png", "d1.jpg", "d2.png"}
    assert (items["g1.png"].label, items["g1.png"].defect_type) == ("ok", "")
    assert (items["d0.png"].label, items["d0.png"].defect_type) == ("defect", "")
    assert items["d1.jpg"].defect_type == "crack"
    assert items["d1.jpg"].mask_path == tmp_path / "masks" / "d1.png"
    assert items["d2.png"].defect_type == "scratch"
    assert items["d2.png"].mask_path is None


def test_read_folder_without_images(tmp_path: Path):
    (tmp_path / "ok").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        read_folder(tmp_path)


def _named(count: int, label: str = "ok", prefix: str = "img") -> list[Item]:
    return [Item(label=label, path=Path(f"/data/{prefix}{i}.png")) for i in range(count)]


def test_split_is_stable_when_items_are_added():
    items = _named(200)
    train, val = split_items(items, fractions=(0.8, 0.2), seed=1)
    assert len(train) + len(val) == 200
    assert 120 < len(train) < 190
    bigger_train, bigger_val = split_items(items + _named(50, prefix="new"), seed=1)
    assert set(train) <= set(bigger_train)
    assert set(val) <= set(bigger_val)
    assert split_items(items, seed=1) == (train, val)
    assert split_items(items, seed=2) != (train, val)


def test_split_keeps_groups_together():
    items = [
        Item(label="defect" if i % 3 else "ok", path=Path(f"/d/{i}.png"), group=f"phone-{i // 3}")
        for i in range(90)
    ]
    splits = split_items(items, fractions=(0.6, 0.2, 0.2), seed=0)
    assert len(splits) == 3
    where = {}
    for index, split in enumerate(splits):
        for item in split:
            assert where.setdefault(item.group, index) == index


def test_split_of_a_tiny_set_has_both_labels_in_each_split():
    items = _named(8, "ok") + _named(8, "defect", prefix="bad")
    for seed in range(20):
        for split in split_items(items, fractions=(0.8, 0.2), seed=seed):
            assert {item.label for item in split} == {"ok", "defect"}


def test_split_refuses_bad_fractions():
    with pytest.raises(ValueError):
        split_items(_named(3), fractions=(0.8, 0.3))


@pytest.mark.skipif(not MAGNETIC.exists(), reason="shared datasets are not on this machine")
def test_real_manifests_read_and_load():
    tiles = read_manifest(MAGNETIC)
    assert len(tiles) > 400
    assert {item.label for item in tiles} == {"ok", "defect"}
    for item in tiles[:: len(tiles) // 3]:
        image, mask = item.load_image(), item.load_mask()
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        assert mask.shape == image.shape[:2]
        assert mask.any() == (item.label == "defect" and "exp4_num_24843" not in item.path.name)
    phones = read_manifest(PHONES)
    assert {item.defect_type for item in phones} == {"oil", "scratch", "stain"}
    photo = phones[0].load_image()
    assert photo.shape == (576, 1024, 3)
    assert phones[0].load_mask() is None
