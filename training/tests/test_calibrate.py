"""Calibration tables follow the server's halting rule."""

import json
from pathlib import Path

import numpy as np
import pytest

from ctm.calibrate import THRESHOLDS, calibrate, choose_target_signal, exit_ticks, smallest_threshold_within
from tests.conftest import SHIPPED_MODEL


def test_exit_ticks_first_reach_else_most_certain():
    certainty = np.array([[0.2, 0.95, 0.99], [0.3, 0.7, 0.5], [0.91, 0.2, 0.1]])
    ticks, answer, reached = exit_ticks(certainty, 0.9)
    assert ticks.tolist() == [2, 3, 1]
    assert answer.tolist() == [1, 1, 0]  # item 1 never reaches 0.9: its most certain tick (0.7)
    assert reached.tolist() == [True, False, True]


def test_calibration_table():
    certainty = np.array([[0.2, 0.95, 0.99], [0.3, 0.7, 0.5], [0.91, 0.2, 0.1]])
    correct = np.array([[0, 1, 1], [1, 0, 1], [0, 1, 1]], dtype=float)
    table = calibrate({"certainty": certainty}, correct, grids={"certainty": (0.9, 1.0)})
    low, high = table["signals"]["certainty"]["thresholds"]
    assert low["accuracy"] == pytest.approx(1 / 3)  # item 0 right at tick 2; item 1 wrong at tick 2; item 2 wrong
    assert low["mean_ticks"] == pytest.approx(2.0)
    assert low["exit_histogram"] == [1, 1, 1]
    assert high["mean_ticks"] == 3 and high["reached_fraction"] == 0
    assert [f["accuracy_at_tick"] for f in table["fixed_ticks"]] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert table["accuracy_most_certain"] == pytest.approx(1 / 3)  # ticks 3, 2, 1
    assert table["signals"]["certainty"]["accuracy_full_run"] == pytest.approx(1 / 3)
    assert smallest_threshold_within(table, 0.5)["threshold"] == 0.9


def test_every_signal_is_calibrated_with_its_own_rule():
    # The same two items, halting on certainty or on a halting head's signal: each signal halts and, when
    # nothing reaches the threshold, answers by its own scores.
    certainty = np.array([[0.2, 0.5, 0.95], [0.1, 0.3, 0.4]])
    halt = np.array([[0.1, 0.97, 0.99], [0.8, 0.2, 0.3]])
    correct = np.array([[0, 1, 1], [1, 0, 0]], dtype=float)
    predictions = np.array([[[2], [1], [1]], [[0], [3], [4]]])
    table = calibrate(
        {"certainty": certainty, "halt": halt},
        correct,
        predictions,
        grids={"certainty": (0.9, 1.0), "halt": (0.9, 1.0)},
    )
    by_certainty = table["signals"]["certainty"]["thresholds"][0]
    by_halt = table["signals"]["halt"]["thresholds"][0]
    assert by_certainty["mean_ticks"] == 3 and by_certainty["accuracy"] == 0.5  # item 1 answers tick 3 (wrong)
    assert by_halt["mean_ticks"] == 2.5 and by_halt["accuracy"] == 1.0  # 2 ticks; 3 ticks, answer tick 1 (right)
    assert table["signals"]["halt"]["accuracy_full_run"] == 1.0
    # Consistency is agreement with the signal's own full-run answer: threshold 1.0 agrees with itself.
    assert table["signals"]["halt"]["thresholds"][-1]["consistency"] == 1.0
    assert "consistency" in table["signals"]["halt"]["guarantees"]


def test_threshold_grid_is_sorted_and_within_bounds():
    assert list(THRESHOLDS) == sorted(THRESHOLDS)
    assert THRESHOLDS[0] > 0 and THRESHOLDS[-1] == 1.0


def shipped_copy(tmp_path):
    """The shipped model's folder with every file linked, so that new calibrations land in tmp_path."""
    folder = tmp_path / "mnist-ctm" / "1"
    folder.mkdir(parents=True)
    for path in Path(SHIPPED_MODEL).iterdir():
        (folder / path.name).symlink_to(path)
    return folder


def test_unlabeled_calibration_writes_the_next_version_with_provenance(tmp_path):
    from ctm.calibrate import calibrate_unlabeled, calibration_files, upgraded

    folder = shipped_copy(tmp_path)
    traffic = tmp_path / "traffic"
    traffic.mkdir()
    samples = sorted((Path(SHIPPED_MODEL) / "samples").glob("*.png"))[:120]
    for path in samples:
        (traffic / path.name).write_bytes(path.read_bytes())

    written = calibrate_unlabeled(folder, traffic)
    assert written.name == "calibration-2.json"
    new = json.loads(written.read_text())["signals"]["certainty"]
    # A calibration written before halting signals (schema_version 2) is read as the certainty's.
    shipped = upgraded(json.loads((folder / "calibration.json").read_text()), folder)["signals"]["certainty"]
    data = new["guarantees"]["consistency"]["data"]
    assert data["kind"] == "unlabeled" and data["count"] == 120 and data["files"] == 120
    assert data["dir"] == str(traffic) and len(data["sha256"]) == 64 and data["date"].endswith("Z")
    assert new["guarantees"]["accuracy"] == shipped["guarantees"]["accuracy"]  # labels are needed for that
    assert new["guarantees"]["consistency"]["count"] == 120
    # 120 items certify less than the 1,003 validation digits.
    best = {
        label: max(
            (p["target"] for p in g["consistency"]["certified"] if p["confidence"] == 0.95 and p["threshold"]),
            default=0,
        )
        for label, g in (("new", new["guarantees"]), ("shipped", shipped["guarantees"]))
    }
    assert 0 < best["new"] < best["shipped"]

    # Same data, same hash; the next run is the next version, and it is the newest.
    again = calibrate_unlabeled(folder, traffic)
    assert again.name == "calibration-3.json"
    assert (
        json.loads(again.read_text())["signals"]["certainty"]["guarantees"]["consistency"]["data"]["sha256"]
        == (data["sha256"])
    )
    assert json.loads(again.read_text())["derived_from"] == "calibration-2.json"
    assert [v for v, _ in calibration_files(folder)] == [1, 2, 3]


def test_unlabeled_images_must_already_be_the_input_size(tmp_path):
    from PIL import Image

    from ctm.calibrate import calibrate_unlabeled

    folder = shipped_copy(tmp_path)
    traffic = tmp_path / "photos"
    traffic.mkdir()
    Image.new("L", (64, 48)).save(traffic / "photo.png")
    with pytest.raises(SystemExit, match=r"photo\.png: 64x48 pixels; images must already be 28x28"):
        calibrate_unlabeled(folder, traffic)


def test_the_target_signal_is_the_one_that_reaches_the_accuracy_in_fewer_ticks():
    # 100 items, 10 ticks; every answer is right from tick 3. Certainty crosses 0.9 at tick 3, the halt
    # signal only at tick 8: certainty gets there in fewer ticks, so targets are certified on it.
    correct = np.zeros((100, 10))
    correct[:, 2:] = 1
    certainty = np.tile(np.where(np.arange(10) >= 2, 0.95, 0.1), (100, 1))
    halt = np.tile(np.where(np.arange(10) >= 7, 0.999, 0.01), (100, 1))
    data = {"kind": "labeled", "split": "train", "count": 100}
    chosen = choose_target_signal({"certainty": certainty, "halt": halt}, correct, data)
    assert chosen["signal"] == "certainty"
    assert chosen["mean_ticks"]["certainty"] == 3 and chosen["mean_ticks"]["halt"] == 8
    assert chosen["data"] == data
    # The other way round, the halt signal; and on equal cost the first signal, certainty.
    assert choose_target_signal({"certainty": halt, "halt": certainty}, correct, data)["signal"] == "halt"
    assert choose_target_signal({"certainty": certainty, "halt": certainty}, correct, data)["signal"] == "certainty"


def test_the_shipped_calibrations_name_their_target_signal_chosen_apart_from_the_calibration():
    for folder in (Path(SHIPPED_MODEL), Path(SHIPPED_MODEL).parents[1] / "maze-ctm" / "1"):
        calibration = json.loads((folder / "calibration.json").read_text())
        chosen = calibration["target_signal"]
        assert chosen["signal"] in calibration["signals"]
        assert chosen["data"]["split"] == "train" != calibration["split"]
