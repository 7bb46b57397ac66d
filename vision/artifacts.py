"""Model artifact files: weights plus JSON metadata in one zip, checksummed, and their loading."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vision.model import ARCHITECTURE, ModelConfig, ScratchNet

FORMAT = "inspection-vision-artifact"
FORMAT_VERSION = 1
_METADATA_NAME = "metadata.json"
_WEIGHTS_NAME = "weights.pt"


class ArtifactError(ValueError):
    """The file is not a usable model artifact (missing, corrupt, foreign or tampered)."""


@dataclass(frozen=True)
class LoadedArtifact:
    model: ScratchNet
    metadata: dict[str, Any]
    sha256: str


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_artifact(path: str | Path, model: ScratchNet, metadata: dict[str, Any]) -> str:
    """Write the artifact and a `<path>.json` sidecar (metadata + file sha256); return the sha256.

    The weights' own sha256 goes into the metadata, so a file whose weights were swapped or
    damaged is refused on load even when nobody kept the file hash.
    """
    path = Path(path)
    buffer = io.BytesIO()
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    torch.save(state, buffer)
    weights = buffer.getvalue()
    full_metadata = {
        **metadata,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": ARCHITECTURE,
        "model_config": model.config.to_dict(),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(_METADATA_NAME, json.dumps(full_metadata, indent=2, sort_keys=True))
        archive.writestr(_WEIGHTS_NAME, weights)
    partial.replace(path)  # readers never see a half-written artifact
    sha256 = file_sha256(path)
    sidecar = {**full_metadata, "sha256": sha256}
    path.with_name(path.name + ".json").write_text(json.dumps(sidecar, indent=2, sort_keys=True))
    return sha256


def _open(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise ArtifactError(f"{path}: no such model file")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ArtifactError(
            f"{path}: not a model artifact (unreadable or corrupt: {error})"
        ) from None
    names = set(archive.namelist())
    if not {_METADATA_NAME, _WEIGHTS_NAME} <= names:
        archive.close()
        raise ArtifactError(f"{path}: not a model artifact of this platform (foreign file)")
    return archive


def _read_metadata(archive: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    try:
        metadata = json.loads(archive.read(_METADATA_NAME))
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
        raise ArtifactError(f"{path}: corrupt metadata ({error})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a model artifact of this platform (foreign file)")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: artifact format version {metadata.get('format_version')} is not supported "
            f"(this code reads version {FORMAT_VERSION})"
        )
    if metadata.get("architecture") != ARCHITECTURE:
        raise ArtifactError(
            f"{path}: architecture {metadata.get('architecture')!r} is unknown to this code"
        )
    return metadata


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The artifact's metadata plus `sha256` of the file, without loading the weights."""
    path = Path(path)
    with _open(path) as archive:
        metadata = _read_metadata(archive, path)
    return {**metadata, "sha256": file_sha256(path)}


def load_artifact(path: str | Path, *, expected_sha256: str | None = None) -> LoadedArtifact:
    """Load and verify an artifact; `expected_sha256` (as stored by a registry) is checked too."""
    path = Path(path)
    sha256 = file_sha256(path) if path.is_file() else ""
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise ArtifactError(
            f"{path}: sha256 {sha256[:12] or '-'}... does not match the registered "
            f"{expected_sha256[:12]}...: the file was changed or replaced"
        )
    with _open(path) as archive:
        metadata = _read_metadata(archive, path)
        try:
            weights = archive.read(_WEIGHTS_NAME)
        except (zipfile.BadZipFile, OSError) as error:
            raise ArtifactError(f"{path}: corrupt weights ({error})") from None
    if hashlib.sha256(weights).hexdigest() != metadata.get("weights_sha256"):
        raise ArtifactError(f"{path}: weights do not match their recorded sha256 (corrupt file)")
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
        model = ScratchNet(ModelConfig.from_dict(metadata["model_config"]))
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ArtifactError(
            f"{path}: weights do not fit the recorded architecture ({error})"
        ) from None
    model.eval()
    return LoadedArtifact(model=model, metadata={**metadata, "sha256": sha256}, sha256=sha256)
