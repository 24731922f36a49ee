"""Bring-your-own data: an ImageFolder root holding ``train/<class>/*`` and ``test/<class>/*``.

Decoding 50,000 image files takes minutes on a small CPU, so the decoded uint8
arrays are kept on disk (``.npy``, memory-mapped on the next load) under a key of
the folder's *listing*: every file's relative path, size and modification time
(nanoseconds), plus the resize option. Why the listing and not the bytes: it costs
one ``stat`` per file (a fraction of a second for 50,000) where hashing the bytes
means reading every file again, and any edit, copy or replacement of an image
changes its size or mtime — the same test ``make`` and ``rsync`` rely on. The
arrays themselves are checksummed like every other cached artefact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import uuid

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..config import DataConfig
from ..errors import DataError
from ..integrity import file_digest
from ..store import default_cache_dir, hold, key_lock
from .base import DatasetSplits, ImageSet, channel_stats

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
DECODER_VERSION = 1
"""Bump when decoding changes (colour mode, resize filter): cached arrays are then rebuilt."""

log = logging.getLogger("deltainf")
Files = list[tuple[str, str]]


def _scan(split_dir: str) -> tuple[list[str], Files]:
    if not os.path.isdir(split_dir):
        raise DataError(f"missing folder {split_dir} (expected <root>/train/<class>/* and <root>/test/<class>/*)")
    classes = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
    files = []
    for c in classes:
        for f in sorted(os.listdir(os.path.join(split_dir, c))):
            if f.lower().endswith(IMAGE_EXTENSIONS):
                files.append((os.path.join(split_dir, c, f), c))
    if not files:
        raise DataError(f"no images found under {split_dir}")
    return classes, files


def _listing(root: str) -> tuple[list[str], Files, Files]:
    root = os.path.expanduser(root or "")
    if not root or not os.path.isdir(root):
        raise DataError(f"data folder {root or '(none)'} does not exist")
    classes, train_files = _scan(os.path.join(root, "train"))
    test_classes, test_files = _scan(os.path.join(root, "test"))
    unknown = sorted(set(test_classes) - set(classes))
    if unknown:
        raise DataError(f"test folder has classes not in train: {', '.join(unknown)}")
    if len(classes) < 2:
        raise DataError(f"need at least two classes under {root}/train, found {len(classes)}")
    return classes, train_files, test_files


def listing_fingerprint(root: str, paths: list[str], extra: str = "") -> str:
    """Hash of (relative path, size, mtime in ns) of every file: changes whenever a file does."""
    h = hashlib.blake2b(digest_size=12)
    h.update(f"{DECODER_VERSION}|{extra}\n".encode())
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as err:
            raise DataError(f"cannot read image {path}: {err.strerror}") from None
        h.update(f"{os.path.relpath(path, root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _key(root: str, classes: list[str], train_files: Files, test_files: Files, size: int | None) -> str:
    return listing_fingerprint(root, [p for p, _ in train_files + test_files], f"{size}|{','.join(classes)}")


def fingerprint(cfg: DataConfig) -> str:
    """The folder's content key (see the module docstring): one ``stat`` per file."""
    root = os.path.expanduser(cfg.data_dir or "")
    return _key(root, *_listing(root), cfg.image_size)


def _decode(path: str, mode: str | None, size: int | None) -> tuple[np.ndarray, str]:
    try:
        with Image.open(path) as im:
            im.load()
            if mode is None:
                mode = "L" if im.mode in ("L", "1", "I;16", "I") else "RGB"
            im = im.convert(mode)
            if size is not None:
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8), mode
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None


def _decode_split(files: Files, class_index: dict[str, int], size: int | None, mode: str | None,
                  out_dir: str, split: str) -> str:
    """Decode ``files`` straight into ``<split>_x.npy`` (uint8 [N, C, H, W]); returns the colour mode."""
    first, mode = _decode(files[0][0], mode, size)
    channels = 1 if first.ndim == 2 else first.shape[2]
    x = np.lib.format.open_memmap(os.path.join(out_dir, f"{split}_x.npy"), mode="w+", dtype=np.uint8,
                                  shape=(len(files), channels, first.shape[0], first.shape[1]))
    for i, (path, _) in enumerate(files):
        arr = first if i == 0 else _decode(path, mode, size)[0]
        if arr.shape != first.shape:
            raise DataError(
                f"images differ in size: {path} is {arr.shape[:2]} but {files[0][0]} is "
                f"{first.shape[:2]} (pass --image-size to resize all)"
            )
        x[i] = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    x.flush()
    del x
    np.save(os.path.join(out_dir, f"{split}_y.npy"), np.array([class_index[c] for _, c in files], dtype=np.int64))
    return mode


ARRAYS = ("train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy")


def _build(root: str, classes: list[str], train_files: Files, test_files: Files, size: int | None,
           final: str) -> None:
    """Decode every image into a fresh folder, checksum it, and move it into place atomically."""
    tmp = f"{final}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.makedirs(tmp)
    try:
        index = {c: i for i, c in enumerate(classes)}
        mode = _decode_split(train_files, index, size, None, tmp, "train")
        _decode_split(test_files, index, size, mode, tmp, "test")
        meta = {"root": root, "classes": classes, "mode": mode,
                "digests": {name: file_digest(os.path.join(tmp, name)) for name in ARRAYS}}
        with open(os.path.join(tmp, "meta.json"), "w") as fh:
            json.dump(meta, fh)
        with contextlib.suppress(OSError):  # another run finished the same folder first: keep theirs
            os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _open(final: str) -> dict | None:
    """The cached arrays, verified against their checksums; None (and deleted) when damaged."""
    try:
        with open(os.path.join(final, "meta.json")) as fh:
            meta = json.load(fh)
        bad = [n for n in ARRAYS if file_digest(os.path.join(final, n)) != meta["digests"][n]]
        if not bad:
            # copy-on-write mapping: pages load on demand and writes never reach the file
            return {**meta, **{n: np.load(os.path.join(final, n), mmap_mode="c") for n in ARRAYS}}
        reason = f"{bad[0]} does not match its checksum"
    except (OSError, ValueError, KeyError) as err:
        reason = type(err).__name__
    log.warning("cached decoded images in %s were corrupt (%s); decoding again", final, reason)
    shutil.rmtree(final, ignore_errors=True)
    return None


def load(cfg: DataConfig, cache_dir: str | None = None) -> DatasetSplits:
    """Load (decoding once, then memory-mapping) an ImageFolder root as uint8 image sets."""
    root = os.path.expanduser(cfg.data_dir or "")
    classes, train_files, test_files = _listing(root)
    key = _key(root, classes, train_files, test_files, cfg.image_size)
    cache = cache_dir or default_cache_dir()
    final = os.path.join(cache, "datasets", f"folder-{key}")
    arrays = _open(final) if os.path.isdir(final) else None
    if arrays is None:
        try:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            lock = key_lock(cache, final)
        except OSError:  # a read-only cache: decode into a scratch folder for this run only
            return _load_uncached(cfg, root, classes, train_files, test_files)
        with hold(lock, f"decoded images of {root}"):
            arrays = _open(final) if os.path.isdir(final) else None
            if arrays is None:
                _build(root, classes, train_files, test_files, cfg.image_size, final)
                arrays = _open(final)
    if arrays is None:
        raise DataError(f"could not cache the decoded images of {root} in {final}")
    return _splits(root, classes, arrays)


def _load_uncached(cfg: DataConfig, root: str, classes: list[str], train_files: Files,
                   test_files: Files) -> DatasetSplits:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        final = os.path.join(tmp, "arrays")
        _build(root, classes, train_files, test_files, cfg.image_size, final)
        arrays = _open(final)
        assert arrays is not None
        arrays = {k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in arrays.items()}
    return _splits(root, classes, arrays)


def _splits(root: str, classes: list[str], arrays: dict) -> DatasetSplits:
    train = ImageSet(torch.from_numpy(arrays["train_x.npy"]), torch.from_numpy(arrays["train_y.npy"]),
                     tuple(classes))
    test = ImageSet(torch.from_numpy(arrays["test_x.npy"]), torch.from_numpy(arrays["test_y.npy"]), tuple(classes))
    mean, std = channel_stats(train)
    # Flips keep labels for photographs; grayscale folders are often digits/characters.
    return DatasetSplits(os.path.basename(os.path.normpath(root)), train, test, mean, std,
                         augment_flip=arrays["mode"] == "RGB", source=f"ImageFolder {root}")
