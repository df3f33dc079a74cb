"""The model directory: a manifest plus array files, written atomically.

Layout::

    MODEL_DIR/
      manifest.json          format version, versions, parameters, fingerprint, table list
      tables-<fingerprint>/  NAME.npy (memory-mappable), NAME.txt (one string a line),
                             entities.jsonl (the entity store)

``manifest.json`` names the one complete tables folder. A build writes a new
folder under a temporary name, renames it into place, then replaces the manifest
with ``os.replace`` (atomic on POSIX) and only then removes the old folder. A
build that fails or is killed at any point leaves the previous model readable.
Nothing in the files depends on the time or the machine, so the same corpus and
parameters give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .build import Tables
from .schema import SPECS

FORMAT_VERSION = 4
MANIFEST = "manifest.json"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ModelError(f"{out} is a file, not a model directory; choose another -o path.")
    if out.is_dir() and not (out / MANIFEST).exists():
        leftovers = [p for p in out.iterdir() if not p.name.startswith(".tablelm-tmp-")]
        if leftovers:
            raise ModelError(
                f"{out} exists and is not a tablelm model (no {MANIFEST}); refusing to write into it. "
                "Choose an empty or new directory with -o.")


def save_tables(out_dir, tables: Tables, manifest: dict) -> Path:
    """Write ``tables`` and ``manifest`` to ``out_dir`` atomically; return the folder."""
    out = Path(out_dir)
    _check_target(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".tablelm-tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        listing = {}
        for name in sorted(tables.arrays):
            arr = np.ascontiguousarray(tables.arrays[name])
            with open(tmp / f"{name}.npy", "wb") as f:
                np.save(f, arr, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            listing[name] = {"file": f"{name}.npy", "dtype": str(arr.dtype), "shape": list(arr.shape),
                             "kind": SPECS[name].kind if name in SPECS else "extra"}
        for name in sorted(tables.strings):
            values = tables.strings[name]
            if any("\n" in v for v in values):
                raise ModelError(f"table {name!r} has a string with a newline; this is a bug, please report it")
            _write_file(tmp / f"{name}.txt", "\n".join(values).encode("utf-8"))
            listing[name] = {"file": f"{name}.txt", "kind": "strings", "rows": len(values)}
        for name in sorted(tables.blobs):
            _write_file(tmp / name, tables.blobs[name])
            listing[name] = {"file": name, "kind": "blob", "bytes": len(tables.blobs[name])}
        manifest = dict(manifest, format_version=FORMAT_VERSION, tables=listing)
        digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
        folder = f"tables-{digest}"
        manifest["folder"] = folder
        _fsync_dir(tmp)
        if (out / folder).exists():  # a folder of that name is in place (possibly damaged): never reuse it
            folder = f"{folder}-{uuid.uuid4().hex[:8]}"
            manifest["folder"] = folder
        os.rename(tmp, out / folder)
        mtmp = out / f".tablelm-tmp-{uuid.uuid4().hex}.json"
        _write_file(mtmp, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
        os.replace(mtmp, out / MANIFEST)
        _fsync_dir(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # the new model is in place: remove older folders and leftovers of killed builds
    for p in out.iterdir():
        if p.name != folder and (p.name.startswith("tables-") or p.name.startswith(".tablelm-tmp-")):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return out


def update_manifest(model_dir, changes: dict) -> dict:
    """Replace top-level manifest entries (e.g. the tuned profile) atomically; tables are untouched."""
    out = Path(model_dir)
    manifest = dict(read_manifest(out), **changes)
    mtmp = out / f".tablelm-tmp-{uuid.uuid4().hex}.json"
    _write_file(mtmp, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    os.replace(mtmp, out / MANIFEST)
    _fsync_dir(out)
    return manifest


def read_manifest(model_dir, any_version: bool = False) -> dict:
    path = Path(model_dir) / MANIFEST
    if not path.exists():
        raise ModelError(f"{model_dir} is not a tablelm model (no {MANIFEST}). "
                         f"Build one with: tablelm build SOURCE -o {model_dir}")
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{path} cannot be read ({e}); rebuild the model with tablelm build.") from None
    if not isinstance(manifest, dict):
        raise ModelError(f"{path} is not a tablelm manifest (a JSON object); rebuild the model with tablelm build.")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION and not any_version:
        raise ModelError(
            f"{model_dir} has model format {version!r}, this tablelm reads format {FORMAT_VERSION}. "
            f"Upgrade it from the entities it stores: tablelm upgrade -m {model_dir}")
    return manifest


def load_tables(model_dir, mmap: bool = True) -> tuple[Tables, dict, Path]:
    """Load a model directory; arrays are memory-mapped unless ``mmap`` is False."""
    manifest = read_manifest(model_dir)
    folder = Path(model_dir) / manifest["folder"]
    tables = Tables(stats=manifest.get("stats", {}))
    try:
        for name, meta in manifest["tables"].items():
            path = folder / meta["file"]
            kind = meta.get("kind")
            if kind == "strings":
                text = path.read_bytes().decode("utf-8")
                tables.strings[name] = text.split("\n") if meta["rows"] else []
            elif kind == "blob":
                continue  # read on demand (the entity store)
            else:
                tables.arrays[name] = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ModelError(f"{folder} is incomplete or damaged ({e}); rebuild the model with tablelm build.") from None
    return tables, manifest, folder
