import json
import subprocess
import sys

import pytest

from vision.cli import main


def run(capsys, *argv):
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_synth_writes_a_manifest_the_trainer_reads(capsys, tmp_path):
    status, out, _ = run(
        capsys, "synth", "--count", "6", "--out", str(tmp_path / "d"), "--size", "128x72", "--json"
    )
    assert status == 0
    manifest = json.loads(out)["manifest"]
    assert (tmp_path / "d" / "manifest.csv").samefile(manifest)


def test_train_evaluate_bench_export_from_the_command_line(capsys, tmp_path):
    model = str(tmp_path / "m.pt")
    status, out, _ = run(
        capsys,
        "train",
        "--data",
        "synth:16",
        "--out",
        model,
        "--size",
        "128x72",
        "--max-steps",
        "2",
        "--seed",
        "4",
        "--json",
    )
    assert status == 0
    trained = json.loads(out)
    assert len(trained["sha256"]) == 64 and "pass" in trained["thresholds"]

    status, out, _ = run(
        capsys,
        "evaluate",
        "--model",
        model,
        "--data",
        "synth:10:99",
        "--size",
        "128x72",
        "--json",
        "--overlays",
        str(tmp_path / "overlays"),
    )
    assert status == 0
    report = json.loads(out)
    for key in (
        "auroc",
        "average_precision",
        "precision",
        "recall",
        "f1",
        "pixel_iou",
        "region_recall",
    ):
        assert key in report
    assert report["n_images"] == 10
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 10

    status, out, _ = run(
        capsys, "bench", "--model", model, "--size", "128x72", "--repeats", "2", "--json"
    )
    assert status == 0
    assert json.loads(out)["ms_per_image_1thread"] > 0

    status, out, _ = run(
        capsys,
        "export",
        "--model",
        model,
        "--format",
        "torchscript",
        "--out",
        str(tmp_path / "m.ts"),
        "--json",
    )
    assert status == 0
    assert json.loads(out)["parity_ok"] is True


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "--model", "absent.pt", "--data", "synth:4"], "no such model file"),
        (["train", "--data", "nowhere.csv", "--out", "x.pt"], "no such manifest or folder"),
        (["train", "--data", "synth:x", "--out", "x.pt"], "synth:COUNT"),
        (["bench", "--model", "absent.pt", "--size", "big"], "size must look like"),
    ],
)
def test_mistakes_get_one_clear_line_and_status_2(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert message in err
    assert "Traceback" not in err


def test_python_dash_m_vision_is_the_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "vision", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert "evaluate" in result.stdout
