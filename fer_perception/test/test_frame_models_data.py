"""Frame datasets: FER2013 CSV, UTKFace names, RAF-DB and AffectNet layouts, synthetic face crops."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from fer_perception import labels as L
from fer_perception.data.affectnet import load_affectnet
from fer_perception.data.fer2013 import load_fer2013_csv, write_fer2013_csv
from fer_perception.data.image_folder import scan_image_folder
from fer_perception.data.rafdb import load_rafdb
from fer_perception.data.synthetic_faces import (
    age_gender_crops, demographic_identity, demographics_for_seed, expression_crops,
)
from fer_perception.data.utkface import age_group, age_group_name, parse_utkface_name, scan_utkface
from fer_perception.errors import ConfigError, DatasetError


def _img(path, value=128, size=(12, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full(size + (3,), value, np.uint8))


def test_fer2013_roundtrip_and_usage_split(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 48, 48), dtype=np.uint8)
    usage = ["Training", "Training", "PublicTest", "PrivateTest", "Training"]
    p = tmp_path / "fer.csv"
    write_fer2013_csv(p, imgs, [0, 3, 6, 2, 5], usage)
    d = load_fer2013_csv(p)
    assert len(d) == 5 and d.images.dtype == np.uint8
    np.testing.assert_array_equal(d.images, imgs)
    np.testing.assert_array_equal(d.labels, [0, 3, 6, 2, 5])
    assert len(d.split("Training")) == 3
    assert len(load_fer2013_csv(p, usage="PublicTest")) == 1
    assert len(load_fer2013_csv(p, limit=2)) == 2
    assert d.classes == L.FER2013_CLASSES


def test_fer2013_errors_name_the_line(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("emotion,pixels,Usage\n3," + " ".join(["1"] * 2304) + ",Training\n9,"
                 + " ".join(["1"] * 2304) + ",Training\n")
    with pytest.raises(DatasetError, match="line 3: emotion 9"):
        load_fer2013_csv(p)
    p.write_text("emotion,pixels\n1,1 2 3\n")
    with pytest.raises(DatasetError, match="line 2: 3 pixel values"):
        load_fer2013_csv(p)
    p.write_text("label,image\n")
    with pytest.raises(DatasetError, match="header"):
        load_fer2013_csv(p)
    with pytest.raises(DatasetError, match="not found"):
        load_fer2013_csv(tmp_path / "none.csv")


def test_utkface_names_and_malformed_files(tmp_path, caplog):
    assert parse_utkface_name("25_1_2_20170116174525125.jpg.chip.jpg") == (
        "25_1_2_20170116174525125.jpg.chip.jpg", 25, 1, 2)
    assert parse_utkface_name("61_0_0_20170117191410023.jpg").age == 61
    for bad in ("39_1_20170116174525125.jpg", "61_3_0_2017.jpg", "x_1_2_3.jpg", "200_0_0_1.jpg"):
        assert parse_utkface_name(bad) is None
    for name in ("25_1_2_20170116174525125.jpg.chip.jpg", "3_0_4_20170103200814791.jpg",
                 "39_1_20170116174525125.jpg", "1_0_2017.jpg"):
        _img(tmp_path / "utk" / name)
    (tmp_path / "utk" / "notes.txt").write_text("x")
    with caplog.at_level(logging.WARNING):
        idx = scan_utkface(tmp_path / "utk")
    assert len(idx.records) == 2 and len(idx.skipped) == 2
    assert "skipped 2 malformed" in caplog.text
    ages, genders, races = idx.arrays()
    assert sorted(ages.tolist()) == [3, 25] and sorted(races.tolist()) == [2, 4]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no UTKFace images"):
        scan_utkface(tmp_path / "empty")
    with pytest.raises(DatasetError, match="not found"):
        scan_utkface(tmp_path / "absent")


def test_age_groups():
    g = age_group([0, 12, 13, 19.9, 20, 45, 69, 70, 116])
    assert g.tolist() == [0, 0, 1, 1, 2, 4, 6, 7, 7]
    assert age_group_name(7) == "70+" and age_group_name(2) == "20-29"


def test_rafdb_official_layout(tmp_path):
    root = tmp_path / "raf-basic"
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text(
        "train_00001.jpg 5\ntrain_00002.jpg 1\ntest_0001.jpg 7\n")
    for n in ("train_00001", "train_00002", "test_0001"):
        _img(root / "Image" / "aligned" / f"{n}_aligned.jpg")
    tr = load_rafdb(root, "train")
    assert tr.labels.tolist() == [4, 0] and tr.classes == L.RAFDB_CLASSES
    assert tr.paths[0].endswith("train_00001_aligned.jpg")
    te = load_rafdb(root, "test")
    assert L.RAFDB_CLASSES[int(te.labels[0])] == "neutral"
    (root / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 8\n")
    with pytest.raises(DatasetError, match="label 8"):
        load_rafdb(root, "train")
    with pytest.raises(DatasetError, match="split"):
        load_rafdb(root, "val")


def test_class_folder_layouts(tmp_path):
    _img(tmp_path / "raf" / "train" / "happiness" / "a.png")
    _img(tmp_path / "raf" / "train" / "6" / "b.png")
    d = load_rafdb(tmp_path / "raf", "train")
    assert sorted(d.labels.tolist()) == [3, 6]
    _img(tmp_path / "bad" / "joy" / "a.png")
    with pytest.raises(DatasetError, match="'joy'"):
        scan_image_folder(tmp_path / "bad", L.RAFDB_CLASSES)
    _img(tmp_path / "aff" / "val" / "contempt" / "a.png")
    _img(tmp_path / "aff" / "val" / "happy" / "b.png")
    assert len(load_affectnet(tmp_path / "aff", "val", 8)) == 2
    assert load_affectnet(tmp_path / "aff", "val", 7).labels.tolist() == [1]


def test_affectnet_csv_layout_drops_non_expressions_and_counts_missing(tmp_path, caplog):
    root = tmp_path / "AffectNet"
    rows = [("1/a.jpg", 0), ("1/b.jpg", 7), ("1/c.jpg", 8), ("1/d.jpg", 10), ("2/missing.jpg", 3)]
    root.mkdir()
    (root / "validation.csv").write_text("subDirectory_filePath,face_x,expression\n"
                                         + "".join(f"{p},0,{e}\n" for p, e in rows))
    for p in ("1/a.jpg", "1/b.jpg", "1/c.jpg", "1/d.jpg"):
        _img(root / "Manually_Annotated_Images" / p)
    with caplog.at_level(logging.WARNING):
        d8 = load_affectnet(root, "val", 8)
    assert d8.labels.tolist() == [0, 7] and d8.classes == L.AFFECTNET8_CLASSES
    assert "1 listed image(s) are missing" in caplog.text
    assert load_affectnet(root, "val", 7).labels.tolist() == [0]
    (root / "training.csv").write_text("path,label\n")
    with pytest.raises(DatasetError, match="subDirectory_filePath"):
        load_affectnet(root, "train")


def test_synthetic_demographics_are_deterministic_and_visible():
    assert demographics_for_seed(5) == demographics_for_seed(5)
    ages = np.array([demographics_for_seed(s)[0] for s in range(200)])
    genders = np.array([demographics_for_seed(s)[1] for s in range(200)])
    assert 18 <= ages.min() and ages.max() <= 75 and 0.35 < genders.mean() < 0.65
    young, old = demographic_identity(3, 20, 0), demographic_identity(3, 70, 0)
    assert np.mean(old.hair) > np.mean(young.hair)  # greying
    assert old.eye_height < young.eye_height
    f, m = demographic_identity(3, 30, 1), demographic_identity(3, 30, 0)
    assert f.brow_thickness < m.brow_thickness and f.hair_style == 1
    with pytest.raises(ConfigError, match="gender"):
        demographic_identity(3, 30, 2)


def test_synthetic_crops_shapes_labels_and_determinism():
    x, y = expression_crops([1, 2], frames_per_clip=1, size=32)
    assert x.shape == (14, 32, 32, 3) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [2] * 7
    x2, _ = expression_crops([1, 2], frames_per_clip=1, size=32)
    np.testing.assert_array_equal(x, x2)
    a, ages, genders = age_gender_crops([4, 5, 6], frames_per_clip=2, size=32)
    assert a.shape == (6, 32, 32, 3) and ages.dtype == np.float32
    assert ages[0] == ages[1] == pytest.approx(demographics_for_seed(4)[0])
    with pytest.raises(ConfigError, match="no synthetic"):
        expression_crops([], size=32)
