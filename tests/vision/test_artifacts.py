import json
import zipfile

import pytest
import torch

from vision.artifacts import ArtifactError, file_sha256, load_artifact, read_metadata, save_artifact
from vision.model import ScratchNet


def test_round_trip_keeps_weights_metadata_and_hash(tmp_path):
    model = ScratchNet()
    path = tmp_path / "m.pt"
    sha256 = save_artifact(path, model, {"thresholds": {"pass": 0.2, "fail": 0.8}})
    loaded = load_artifact(path, expected_sha256=sha256)
    assert loaded.sha256 == sha256 == file_sha256(path)
    assert loaded.metadata["thresholds"] == {"pass": 0.2, "fail": 0.8}
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key])
    sidecar = json.loads((tmp_path / "m.pt.json").read_text())
    assert sidecar["sha256"] == sha256
    assert read_metadata(path)["architecture"] == "scratchnet-v1"


def test_a_changed_file_is_refused_against_the_registered_hash(tmp_path):
    path = tmp_path / "m.pt"
    sha256 = save_artifact(path, ScratchNet(), {})
    with pytest.raises(ArtifactError, match="does not match the registered"):
        load_artifact(path, expected_sha256="0" * 64)
    assert load_artifact(path, expected_sha256=sha256).sha256 == sha256


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a model artifact"),
        (b"\x89PNG\r\n\x1a\n not a model", "not a model artifact"),
    ],
)
def test_foreign_or_empty_files_get_a_clear_error(tmp_path, content, message):
    path = tmp_path / "m.pt"
    path.write_bytes(content)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(path)


def test_a_plain_torch_checkpoint_is_foreign(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(ScratchNet().state_dict(), path)
    with pytest.raises(ArtifactError, match="foreign file"):
        load_artifact(path)


def test_truncated_artifact_is_corrupt(tmp_path):
    path = tmp_path / "m.pt"
    save_artifact(path, ScratchNet(), {})
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(ArtifactError):
        load_artifact(path)


def test_swapped_weights_are_detected(tmp_path):
    path = tmp_path / "m.pt"
    save_artifact(path, ScratchNet(), {})
    with zipfile.ZipFile(path) as archive:
        metadata = archive.read("metadata.json")
    other = tmp_path / "other.pt"
    save_artifact(other, ScratchNet(), {})
    with zipfile.ZipFile(other) as archive:
        weights = archive.read("weights.pt")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", metadata)
        archive.writestr("weights.pt", weights)
    with pytest.raises(ArtifactError, match="do not match their recorded sha256"):
        load_artifact(path)


def test_missing_file(tmp_path):
    with pytest.raises(ArtifactError, match="no such model file"):
        load_artifact(tmp_path / "absent.pt")


def test_metadata_without_a_reference_still_loads(tmp_path):
    """Artifacts trained before the drift reference existed carry none: they load as before."""
    path = tmp_path / "old.pt"
    old_metadata = {"thresholds": {"pass": 0.2, "fail": 0.8}, "train_config": {"seed": 0}}
    save_artifact(path, ScratchNet(), old_metadata)
    assert "reference" not in load_artifact(path).metadata
    assert "reference" not in read_metadata(path)


def test_a_reference_survives_the_round_trip(tmp_path):
    path = tmp_path / "m.pt"
    reference = {
        "image_stats": {"brightness": [40.12345, 41.5]},
        "embeddings": [[0.1234, 0.5], [0.2, 0.0001]],
        "scores": [0.012345, 0.2],
        "count": 2,
        "source": "validation images",
        "clean_only": True,
    }
    save_artifact(path, ScratchNet(), {"reference": reference})
    assert load_artifact(path).metadata["reference"] == reference
