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

Writers (a build, ``save``, a profile update) hold an exclusive ``flock`` on the
model directory itself, so a second writer waits for the first instead of
removing its files; cleanup runs under that lock and removes only what no
manifest names. Readers take no lock: a reader that finds the folder its
manifest named already replaced reads the manifest again. Every table's size
and SHA-256 are in the manifest; loading checks what is cheap (sizes, dtypes,
shapes, row counts) and :func:`verify` checks everything.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import shutil
import struct
import threading
import time
import uuid
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from . import spill
from .bounded import drop_oldest, make_room
from .build import Tables
from .codecs import (
    ARRAY_CODECS,
    FB_MAX,
    LINES_PER_BLOCK,
    Encoded,
    Forward,
    ForwardPosts,
    ForwardTable,
    LineBlocks,
    Spliced,
    ZBlocks,
    bitpacked_bytes,
    decode_array,
    encode_bp,
    encode_counts,
    encode_lines,
    fixed_bits_width,
    forward_mt_derivable,
    forward_posts_derivable,
    write_zblocks,
)
from .schema import SPECS

#: 5: tables encoded by tables/codecs.py (delta-varint ids, bit-packed counts, a zlib entity store);
#: 6: field counts bit-packed by column (``bc``), context tables encoded with their label totals stored,
#: ids in no order in fixed bits (``fb``); 7: the forward index not stored (``fwdm``: recomputed on first
#: use), ``mt_words`` without the single words' rows (``mw``); 8: the row pointers and offsets as their steps
#: (``db``), pair and context counts in ranked bits (``br``), the entities' labels in fixed bits (``fb``)
FORMAT_VERSION = 8
#: formats this tablelm loads (4: every table a plain .npy; 5, 6, 7: fewer tables encoded; they read the same way)
READABLE = (4, 5, 6, 7, 8)
MANIFEST = "manifest.json"
#: seconds a writer waits for another writer of the same model directory (TABLELM_LOCK_TIMEOUT overrides)
LOCK_TIMEOUT = 600.0
_REBUILD = "rebuild the model with tablelm build"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data, fsync: bool = True) -> None:
    """Write bytes, or copy a file (a blob a sharded build spooled to disk), and fsync (unless the
    caller syncs everything at once: a split model's many sub-models, tablelm/submodels.py)."""
    with open(path, "wb") as f:
        if isinstance(data, Path):
            with open(data, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 22)
        else:
            f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def _os_error(e: OSError, path, doing: str) -> ModelError:
    """A one-line ModelError for an OSError while writing a model (read-only folder, full disk)."""
    hint = {errno.ENOSPC: "free some disk space and build again",
            errno.EDQUOT: "free some disk space and build again",
            errno.EFBIG: "the file system (or a ulimit -f) allows no file this large; free space or raise the limit",
            errno.EACCES: "choose a writable -o directory or fix its permissions",
            errno.EPERM: "choose a writable -o directory or fix its permissions",
            errno.EROFS: "the file system is read-only; choose another -o directory"}.get(
        e.errno or 0, "check the path and try again")
    return ModelError(f"cannot {doing} {path}: {e.strerror or e}; {hint}. The previous model, if any, is unchanged.")


@contextmanager
def model_lock(model_dir, timeout: float | None = None):
    """Hold the exclusive writer lock of ``model_dir`` (an existing directory).

    A second writer waits up to ``timeout`` seconds (default ``TABLELM_LOCK_TIMEOUT``
    or :data:`LOCK_TIMEOUT`) and then fails with a message saying another build is
    writing. The lock is a ``flock`` on the directory itself, so no lock file is left
    behind and the kernel releases it when a writer dies (even by ``kill -9``).
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): writers are not serialized
        yield
        return
    if timeout is None:
        try:
            timeout = float(os.environ.get("TABLELM_LOCK_TIMEOUT", LOCK_TIMEOUT))
        except ValueError:
            timeout = LOCK_TIMEOUT
    fd = os.open(model_dir, os.O_RDONLY)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ModelError(
                        f"{model_dir} is being written by another tablelm build (waited {timeout:g} s); "
                        "wait for it to finish, or build into another -o directory.") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ModelError(f"{out} is a file, not a model directory; choose another -o path.")
    if out.is_dir() and not (out / MANIFEST).exists():
        leftovers = [p for p in out.iterdir() if not p.name.startswith(".tablelm-tmp-")]
        if leftovers:
            raise ModelError(
                f"{out} exists and is not a tablelm model (no {MANIFEST}); refusing to write into it. "
                "Choose an empty or new directory with -o.")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def choose_codec(name: str, arr: np.ndarray, arrays: dict) -> tuple[str | None, bytes | None]:
    """The codec a table is stored with (tables/codecs.py) and its encoded bytes, or (None, None):
    the schema's codec when it makes the file at least 10% smaller than the plain array. Depends on
    the values only, so the same tables give the same files."""
    codec = SPECS[name].codec if name in SPECS else None
    if codec is None or arr.ndim != (2 if codec in ("bc", "mw") else 1) or not arr.size or arr.dtype.kind not in "iu":
        return None, None
    if codec == "fwd":
        return ("fwd", b"") if forward_posts_derivable(dict(arrays, fwd_post=arr)) else (None, None)
    if codec == "fwdm":
        return ("fwdm", b"") if forward_mt_derivable(dict(arrays, fwd_mt=arr)) else (None, None)
    if codec == "bp":  # its size is known before encoding: encode only when it pays, and once
        base_top = spill.span(arr)
        size, width = bitpacked_bytes(arr, base_top)
        if size > 0.9 * arr.nbytes:
            return None, None
        return "bp", encode_bp(arr, width, base_top)
    if codec == "br":  # ranked bits when they are smaller than bit packing (pair counts: ~2.5 bits, not 4)
        if arr.dtype.kind != "u":
            return None, None
        codec, data = encode_counts(arr)
        return (codec, data) if len(data) <= 0.9 * arr.nbytes else (None, None)
    if codec == "dv" and arr.dtype.itemsize > 4:
        return None, None
    if codec == "fb" and fixed_bits_width(arr)[0] > FB_MAX:
        return None, None
    data = ARRAY_CODECS[codec][0](arr)
    return (codec, data) if len(data) <= 0.9 * arr.nbytes else (None, None)


def _write_blob(path: Path, data, fsync: bool) -> None:
    """The entity store as zlib blocks (tables/codecs.py), from bytes, a spooled file or a loaded store."""
    with open(path, "wb") as f:
        if isinstance(data, Path):
            with open(data, "rb") as src:
                write_zblocks(f, iter(lambda: src.read(1 << 22), b""))
        elif isinstance(data, Spliced):  # an add or a delete: the old blocks it keeps are copied
            data.write(f)
        elif isinstance(data, ZBlocks):
            write_zblocks(f, data.chunks())
        else:
            view = memoryview(data)
            write_zblocks(f, (view[i:i + (1 << 22)] for i in range(0, len(view), 1 << 22)))
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def _write_tables(tmp: Path, tables: Tables, fsync: bool = True) -> dict:
    """Write every table into ``tmp``; return the manifest's listing (with sizes and checksums)."""
    # zlib's work (the entity store, the string tables, the ``dz`` tables) in a second thread, while
    # this one encodes the other arrays: zlib releases the GIL (on SciFact ~0.7 s of the save, so
    # overlapped). Each file's bytes do not depend on the order the files are written in.
    zlib_arrays = sorted(name for name in tables.arrays if name in SPECS and SPECS[name].codec == "dz")
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tablelm-save")
    zlib_done = pool.submit(_write_zlib_tables, tmp, tables, zlib_arrays, fsync)
    pool.shutdown(wait=False)
    listing: dict[str, dict] = {}
    try:
        for name in sorted(set(tables.arrays) - set(zlib_arrays)):
            listing[name] = _write_array(tmp, name, tables.arrays[name], tables.arrays, fsync)
    finally:
        zlib_listing = zlib_done.result()  # waited for even when an array failed: no writer left behind
    listing.update(zlib_listing)
    for meta in listing.values():  # read back from the page cache: what is on disk is what is checked
        meta["bytes"] = (tmp / meta["file"]).stat().st_size
        meta["sha256"] = _sha256(tmp / meta["file"])
    return listing


def _write_array(tmp: Path, name: str, arr, arrays: dict, fsync: bool) -> dict:
    arr = np.ascontiguousarray(arr)
    codec, data = choose_codec(name, arr, arrays)
    file = f"{name}.{codec}" if codec else f"{name}.npy"
    with open(tmp / file, "wb") as f:
        if data is not None:
            f.write(data)
        else:
            np.save(f, arr, allow_pickle=False)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    spill.release(arr)  # a spooled table's pages (bounded-memory build): the file keeps them
    meta = {"file": file, "dtype": str(arr.dtype), "shape": list(arr.shape),
            "kind": SPECS[name].kind if name in SPECS else "extra"}
    if codec:
        meta["codec"] = codec
    return meta


def _write_zlib_tables(tmp: Path, tables: Tables, arrays: list, fsync: bool) -> dict:
    """The tables whose encoding is zlib's work: the ``dz`` ``arrays``, the string tables, the blobs."""
    listing = {name: _write_array(tmp, name, tables.arrays[name], tables.arrays, fsync) for name in arrays}
    for name in sorted(tables.strings):
        values = tables.strings[name]
        values = values if isinstance(values, list) else list(values)
        if any("\n" in v for v in values):
            raise ModelError(f"table {name!r} has a string with a newline; this is a bug, please report it")
        _write_file(tmp / f"{name}.txt.z", encode_lines(values), fsync)
        listing[name] = {"file": f"{name}.txt.z", "kind": "strings", "rows": len(values), "codec": "zlines"}
    for name in sorted(tables.blobs):
        _write_blob(tmp / f"{name}.z", tables.blobs[name], fsync)
        listing[name] = {"file": f"{name}.z", "kind": "blob", "codec": "zlib"}
    return listing


def _remove_unnamed(out: Path, keep: str) -> None:
    """Remove table folders and temporary files no manifest names (under the writer lock only)."""
    for p in out.iterdir():
        if p.name != keep and p.name.startswith(("tables-", "split-", ".tablelm-tmp-")):  # split-: a split model's
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def switch_in(out: Path, tmp: Path, folder: str, manifest: dict) -> None:
    """Make the written folder ``tmp`` the model's ``folder`` and switch the manifest to it (under the
    writer lock). The same content in place, or a damaged copy of it, is replaced, never reused."""
    _fsync_dir(tmp)
    final = out / folder
    if final.exists():
        old = out / f".tablelm-tmp-{uuid.uuid4().hex}"
        os.rename(final, old)  # readers that have it open keep their mapped files
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    _replace_manifest(out, manifest)


def save_tables(out_dir, tables: Tables, manifest: dict, *, fsync: bool = True) -> Path:
    """Write ``tables`` and ``manifest`` to ``out_dir`` atomically; return the folder.

    Holds the model directory's writer lock (see :func:`model_lock`) from the first
    file written to the last one removed, so two builds into one directory run one
    after the other and the last one wins; neither removes the other's files.
    An OSError (read-only folder, full disk) becomes a one-line :class:`ModelError`
    and leaves the previous model as it was.
    """
    out = Path(out_dir)
    _check_target(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _os_error(e, out, "create the model directory") from None
    with model_lock(out):
        _check_target(out)  # again: another writer may have changed it while this one waited
        tmp = out / f".tablelm-tmp-{uuid.uuid4().hex}"
        try:
            tmp.mkdir()
            listing = _write_tables(tmp, tables, fsync)
            manifest = dict(manifest, format_version=FORMAT_VERSION, tables=listing)
            digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
            folder = f"tables-{digest}"
            manifest["folder"] = folder
            switch_in(out, tmp, folder, manifest)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise _os_error(e, out, "write the model to") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        # the new model is in place: remove older folders and leftovers of killed builds
        _remove_unnamed(out, folder)
    return out


def _replace_manifest(out: Path, manifest: dict) -> None:
    mtmp = out / f".tablelm-tmp-{uuid.uuid4().hex}.json"
    try:
        _write_file(mtmp, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
        os.replace(mtmp, out / MANIFEST)
    except BaseException:
        mtmp.unlink(missing_ok=True)
        raise
    _fsync_dir(out)


def update_manifest(model_dir, changes: dict) -> dict:
    """Replace top-level manifest entries (e.g. the tuned profile) atomically; tables are untouched."""
    out = Path(model_dir)
    read_manifest(out)  # a clear error for a missing or damaged model before taking the lock
    try:
        with model_lock(out):
            manifest = dict(read_manifest(out), **changes)  # re-read under the lock: no lost update
            _replace_manifest(out, manifest)
    except OSError as e:
        raise _os_error(e, out, "update the manifest of") from None
    return manifest


#: manifest entries every reader needs, with their JSON types
_REQUIRED = {"folder": str, "tables": dict, "build_params": dict, "analyzer": dict, "stats": dict}


def read_manifest(model_dir, any_version: bool = False) -> dict:
    """The manifest of ``model_dir``, checked for the entries and types readers rely on.

    Raises
    ------
    ModelError
        One line naming the file, what is wrong and the fix (rebuild).
    """
    path = Path(model_dir) / MANIFEST
    if not path.exists():
        raise ModelError(f"{model_dir} is not a tablelm model (no {MANIFEST}). "
                         f"Build one with: tablelm build SOURCE -o {model_dir}")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{path} cannot be read ({_one_line(e)}); {_REBUILD}.") from None
    if not isinstance(manifest, dict):
        raise ModelError(f"{path} is not a JSON object (found {type(manifest).__name__}); {_REBUILD}.")
    if manifest.get("kind") == "split":
        names = ", ".join(str(s.get("name")) for s in manifest.get("submodels", []) if isinstance(s, dict))
        raise ModelError(f"{model_dir} is split into sub-models ({names}); this command reads one model: ask the "
                         "split model with tablelm ask/search/serve, or name a sub-model's own folder.")
    version = manifest.get("format_version")
    if (type(version) is not int or version not in READABLE) and not any_version:  # bool, "3": not format 3
        newer = type(version) is int and version > FORMAT_VERSION
        fix = (f"a newer tablelm wrote it: install that version, or rebuild it: tablelm build SOURCE -o {model_dir}"
               if newer else f"upgrade it from the entities it stores: tablelm upgrade -m {model_dir} "
               "(or rebuild it from its sources)")
        raise ModelError(f"{model_dir} has model format {version!r}, this tablelm reads format {FORMAT_VERSION}; {fix}")
    for key, kind in _REQUIRED.items():
        if not isinstance(manifest.get(key), kind):
            found = "missing" if key not in manifest else f"a {type(manifest[key]).__name__}"
            raise ModelError(f"{path}: entry {key!r} is {found}, expected a JSON "
                             f"{'object' if kind is dict else 'string'}; {_REBUILD}.")
    folder = manifest["folder"]
    if not folder.startswith("tables-") or "/" in folder or "\\" in folder or folder in ("tables-", ".."):
        raise ModelError(f"{path}: entry 'folder' is {folder!r}, not a tables folder name; {_REBUILD}.")
    for name, meta in manifest["tables"].items():
        if not isinstance(meta, dict) or not isinstance(meta.get("file"), str) \
                or Path(meta["file"]).name != meta["file"]:
            raise ModelError(f"{path}: table {name!r} has no valid 'file' entry; {_REBUILD}.")
    return manifest


def _one_line(e: Exception, limit: int = 160) -> str:
    """An exception's message on one short line (numpy's header errors span lines and quote the header)."""
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_table(path: Path, name: str, meta: dict, loaded=None) -> None:
    """The cheap checks of one table file: it exists, its size, dtype, shape or row count match."""
    size = path.stat().st_size  # FileNotFoundError: the caller decides (a switched manifest, or damage)
    if "bytes" in meta and size != meta["bytes"]:
        raise ModelError(f"{path} has {size:,} bytes, the manifest says {meta['bytes']:,} "
                         f"(truncated or replaced); {_REBUILD}.")
    if loaded is None:
        return
    if isinstance(loaded, (np.ndarray, Encoded)):
        want = (meta.get("dtype"), meta.get("shape"))
        if (str(loaded.dtype), list(loaded.shape)) != want:
            raise ModelError(f"{path} holds {loaded.dtype} {list(loaded.shape)}, the manifest says "
                             f"{want[0]} {want[1]}; {_REBUILD}.")
    elif len(loaded) != meta.get("rows"):
        raise ModelError(f"{path} has {len(loaded):,} lines, the manifest says {meta.get('rows')}; {_REBUILD}.")


def _load_once(model_dir, mmap: bool) -> tuple[Tables, dict, Path]:
    manifest = read_manifest(model_dir)
    folder = Path(model_dir) / manifest["folder"]
    tables = Tables(stats=manifest.get("stats", {}))
    derived: dict = {}
    for name, meta in manifest["tables"].items():
        path = folder / meta["file"]
        kind = meta.get("kind")
        loaded: Any
        try:
            if kind == "strings":
                # mapped, decoded a line at a time: a query reads a few ids and stems, not all of them
                rows = int(meta.get("rows") or 0)
                if meta.get("codec") == "zlines":
                    tables.strings[name] = loaded = ZLines(LineBlocks(_map(path)) if rows else None, rows)
                else:
                    tables.strings[name] = loaded = Lines(_map(path), rows)
            elif kind == "blob":
                # mapped now, not opened later: a writer may remove this folder right after
                # the manifest was read, and an open mapping keeps the old bytes readable
                tables.blobs[name] = ZBlocks(_map(path)) if meta.get("codec") == "zlib" else _map(path)
                loaded = None  # read on demand (the entity store): only its size is checked
            elif meta.get("codec") in ("fwd", "fwdm"):
                derived[name] = meta
                loaded = None
            elif meta.get("codec"):
                buf = _map(path) if mmap else path.read_bytes()
                tables.arrays[name] = loaded = decode_array(meta["codec"], buf, meta["dtype"], meta["shape"])
            else:
                tables.arrays[name] = loaded = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
                if getattr(loaded, "_mmap", None) is not None:
                    _LIVE_MAPS.add(loaded._mmap)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, EOFError, struct.error) as e:  # struct: a header cut short
            raise ModelError(f"{path} is damaged ({_one_line(e)}); {_REBUILD}.") from None
        _check_table(path, name, meta, loaded)
    a = tables.arrays
    forward = None
    for name, meta in derived.items():  # recomputed from the tables just loaded
        try:
            if "fwd_mt" in derived:  # format 7: the whole forward index, on first use
                forward = forward or Forward(a["post_indptr"], a["post_docs"], a["fwd_indptr"],
                                             tuple(np.dtype(derived[n]["dtype"]) for n in ("fwd_post", "fwd_mt")))
                loaded = ForwardTable(meta["dtype"], meta["shape"][0], forward, name == "fwd_mt")
            else:
                loaded = ForwardPosts(meta["dtype"], meta["shape"][0], a["post_indptr"], a["post_docs"],
                                      a["fwd_indptr"], a["fwd_mt"])
        except KeyError as e:
            raise ModelError(f"{folder}: table {name!r} is derived from {e} which the model lacks; {_REBUILD}.") \
                from None
        tables.arrays[name] = loaded
        _check_table(folder / meta["file"], name, meta, loaded)
    return tables, manifest, folder


class Lines(Sequence):
    """The lines of a memory-mapped UTF-8 text file (a string table), decoded a block at a time.

    ``len`` is the manifest's row count; the line offsets are found on the first indexing
    (one vectorized scan for newlines, int64 per line), and a line is decoded with the
    :data:`BLOCK` lines around it, so loading costs nothing per row and a query that reads a
    few ids or stems decodes a few blocks (at most the whole table, over a process's life).

    At most :data:`CACHE` decoded blocks are kept (the oldest decoded is dropped first): a server
    that shows ever new entities would otherwise end up holding every line as a Python string.
    """

    BLOCK = 1024
    #: decoded blocks kept per table (x BLOCK lines)
    CACHE = 64

    def __init__(self, buf, rows: int):
        self._buf = buf
        self._rows = rows
        self._ends: np.ndarray | None = None
        self._blocks: dict[int, list[str]] = {}

    def __len__(self) -> int:
        return self._rows

    def _line_ends(self) -> np.ndarray:
        if self._ends is None:
            buf = self._buf
            nl = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 10) if len(buf) else np.zeros(0)
            self._ends = np.append(np.asarray(nl, dtype=np.int64), len(buf))
        return self._ends

    def line(self, i: int) -> str:
        """Line ``i`` (in range) decoded alone, without its block: for binary searches."""
        got = self._blocks.get(i // self.BLOCK)
        if got is not None:
            return got[i % self.BLOCK]
        ends = self._line_ends()
        start = int(ends[i - 1]) + 1 if i else 0
        return bytes(self._buf[start:int(ends[i])]).decode("utf-8")

    def _block(self, b: int) -> list[str]:
        got = self._blocks.get(b)
        if got is None:
            ends = self._line_ends()
            lo, hi = b * self.BLOCK, min((b + 1) * self.BLOCK, self._rows)
            start = int(ends[lo - 1]) + 1 if lo else 0
            got = bytes(self._buf[start:int(ends[hi - 1])]).decode("utf-8").split("\n")
            self._keep(b, got)
        return got

    def _keep(self, b: int, lines: list[str]) -> None:
        cache = self._blocks
        make_room(cache, self.CACHE)
        cache[b] = lines

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._rows))]
        i = int(i)
        if i < 0:
            i += self._rows
        if not 0 <= i < self._rows:
            raise IndexError(f"line {i} of {self._rows}")
        return self._one(i)

    def _one(self, i: int) -> str:
        return self._block(i // self.BLOCK)[i % self.BLOCK]

    def take(self, indices) -> list[str]:
        """The lines at ``indices`` (ints in range)."""
        block, size = self._block, self.BLOCK
        return [block(i // size)[i % size] for i in indices]

    def __iter__(self):
        return iter(bytes(self._buf).decode("utf-8").split("\n") if self._rows else [])

    def __eq__(self, other) -> bool:
        return list(self) == list(other) if isinstance(other, (list, Lines)) else NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Lines({self._rows} rows)"


class ZLines(Lines):
    """The lines of a string table stored in zlib blocks (tables/codecs.py), a block inflated on first use."""

    BLOCK = LINES_PER_BLOCK
    #: bytes of inflated blocks kept per table for :meth:`take` (their lines decoded one at a time)
    RAW_BYTES = 48 << 20

    def __init__(self, blocks, rows: int):
        super().__init__(b"", rows)
        self._zb = blocks
        self._raw: dict[int, tuple[bytes, np.ndarray]] = {}  # block -> (inflated bytes, line ends)
        self._raw_bytes = 0
        self._lock = threading.Lock()

    def _raw_block(self, b: int) -> tuple[bytes, np.ndarray]:
        got = self._raw.get(b)
        if got is None:
            raw = self._zb.raw(b)
            ends = np.append(np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == 10), len(raw))
            with self._lock:  # the byte count must stay true when threads of a server insert at once
                while self._raw and self._raw_bytes + len(raw) > self.RAW_BYTES:
                    old = drop_oldest(self._raw)
                    self._raw_bytes -= len(old[0]) if old else 0
                if b not in self._raw:
                    self._raw[b] = (raw, ends)
                    self._raw_bytes += len(raw)
                got = self._raw[b]
        return got

    def take(self, indices) -> list[str]:
        """The lines at ``indices``: from a block already decoded whole, else decoded alone from its
        inflated bytes (kept up to :data:`RAW_BYTES`), so a query's few results scattered over a large
        table cost one inflate per block over the process's life, not a decode of each block's lines.
        """
        size, blocks, out = self.BLOCK, self._blocks, []
        for i in indices:
            b, j = divmod(i, size)
            got = blocks.get(b)
            if got is not None:
                out.append(got[j])
                continue
            raw, ends = self._raw_block(b)
            out.append(raw[int(ends[j - 1]) + 1 if j else 0:int(ends[j])].decode("utf-8"))
        return out

    def line(self, i: int) -> str:
        return self.take((i,))[0]

    _one = line

    def _block(self, b: int) -> list[str]:
        got = self._blocks.get(b)
        if got is None:
            got = self._zb.block(b)
            self._keep(b, got)
        return got

    def __iter__(self):
        # a query's first full read (every id) goes through this: chained in C, a block at a time
        return itertools.chain.from_iterable(map(self._block, range(-(-self._rows // self.BLOCK))))


def read_blob(path: Path, meta: dict) -> bytes:
    """The raw bytes of a stored blob (the entity store), of any format version."""
    if meta.get("codec") == "zlib":
        with open(path, "rb") as f:
            return bytes(ZBlocks(f.read()))
    return path.read_bytes()


def _map(path: Path):
    """A read-only memory map of a file (``b""`` when it is empty: nothing to map)."""
    import mmap as _mmap

    with open(path, "rb") as f:
        if not os.fstat(f.fileno()).st_size:
            return b""
        mm = _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_READ)
    _LIVE_MAPS.add(mm)
    return mm


#: every memory map of a loaded model's files in this process (weak: a dropped model's maps go)
_LIVE_MAPS: weakref.WeakSet = weakref.WeakSet()


def mapped_resident_mb() -> float | None:
    """This process's resident file-backed pages in MB (``/proc/self/statm``'s shared pages: the
    mapped model tables, and the shared libraries), or None where there is no ``/proc`` (not Linux)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            shared = int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return None
    return shared * os.sysconf("SC_PAGE_SIZE") / 2**20


def release_mapped() -> int:
    """Drop the resident pages of every loaded model's memory-mapped tables from this process
    (``madvise(MADV_DONTNEED)``: the maps are read-only views of the files, so the next read faults
    the same bytes back in from the page cache, or from disk). Returns the number of maps released.

    Mapped pages count in a process's resident set: a long-running server whose queries touch
    ever other parts of the tables would otherwise grow towards the size of the model."""
    import mmap as _mmap

    advice = getattr(_mmap, "MADV_DONTNEED", None)
    if advice is None:
        return 0
    done = 0
    for mm in list(_LIVE_MAPS):
        try:
            mm.madvise(advice)
            done += 1
        except (ValueError, OSError):  # closed meanwhile
            pass
    return done


def trim_mapped(budget_mb: float) -> bool:
    """:func:`release_mapped` when the resident file-backed pages pass ``budget_mb`` (0 or less:
    never); True when it released. Costs one read of ``/proc/self/statm`` when under budget."""
    if budget_mb <= 0:
        return False
    got = mapped_resident_mb()
    if got is None or got <= budget_mb:
        return False
    release_mapped()
    return True


def load_tables(model_dir, mmap: bool = True) -> tuple[Tables, dict, Path]:
    """Load a model directory; arrays are memory-mapped unless ``mmap`` is False.

    A build that switches the manifest while this reads removes the old folder; the
    reader then finds a file missing, sees a new manifest and reads that one instead. A build
    of the same content moves the folder aside and its copy into place (:func:`switch_in`): for
    that moment the manifest names a folder that is not there, so a file missing under an
    unchanged manifest is looked for again, after a pause, before it is reported.
    """
    missing = 0
    for _attempt in range(5 + MISSING_RETRIES):
        before = _manifest_folder(model_dir)
        try:
            return _load_once(model_dir, mmap)
        except FileNotFoundError as e:
            if _manifest_folder(model_dir) != before:
                continue  # a writer switched the manifest meanwhile: read the new one
            missing += 1
            if missing > MISSING_RETRIES:
                raise ModelError(f"{e.filename} is missing; {_REBUILD}.") from None
            time.sleep(0.005 * missing)  # a writer between its two renames (microseconds apart)
    raise ModelError(f"{model_dir} kept changing while it was read (another build?); try again.")


#: how often :func:`load_tables` looks again for a file missing under an unchanged manifest
MISSING_RETRIES = 4


def _manifest_folder(model_dir):
    try:
        return json.loads((Path(model_dir) / MANIFEST).read_bytes()).get("folder")
    except (OSError, ValueError, AttributeError):
        return None


def verify(model_dir) -> list[str]:
    """Check everything in a model directory; return one line per problem (empty: all good).

    Beyond what loading checks, every file's SHA-256 is compared with the manifest,
    so flipped bytes that keep a file's size are found too.
    """
    try:
        _, manifest, folder = load_tables(model_dir, mmap=True)
    except ModelError as e:
        return [str(e)]
    problems = []
    for _name, meta in sorted(manifest["tables"].items()):
        path = folder / meta["file"]
        want = meta.get("sha256")
        if want is None:
            problems.append(f"{path}: the manifest records no checksum (built by an older tablelm); {_REBUILD}.")
        elif _sha256(path) != want:
            problems.append(f"{path}: checksum differs from the manifest (the file was changed or damaged); "
                            f"{_REBUILD}.")
    listed = {meta["file"] for meta in manifest["tables"].values()}
    for p in sorted(folder.iterdir()):
        if p.name not in listed:
            problems.append(f"{p}: not listed in the manifest; remove it or {_REBUILD}.")
    return problems
