"""Check where a run will write before it starts: a bad path costs a second, not the whole run.

``--out`` found under a regular file after 161 s of training, or an existing directory
given as ``--out`` that left a stray ``.tmp`` behind: each of these is now one sentence
before any data is loaded. Nothing is created here (no folder, no file is left behind).
"""

from __future__ import annotations

import os
import tempfile

from .errors import ConfigError


def _existing_ancestor(path: str) -> tuple[str, list[str]]:
    """The nearest part of ``path`` that exists, and the parts below it that do not."""
    missing: list[str] = []
    here = path
    while not os.path.lexists(here):
        parent = os.path.dirname(here)
        if parent == here:
            break
        missing.append(here)
        here = parent
    return here, missing


def _can_write_in(folder: str) -> str | None:
    """Why files cannot be created in ``folder`` (None when they can); tried for real, as root too."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".deltainf-write-check-", dir=folder)
    except OSError as err:
        return err.strerror or type(err).__name__
    os.close(fd)
    os.unlink(probe)
    return None


def _folder_for(folder: str, path: str, flag: str, what: str) -> None:
    """``folder`` (where ``flag``'s ``path`` goes) exists and is writable, or can be created."""
    base, missing = _existing_ancestor(folder)
    if not os.path.isdir(base):
        raise ConfigError(f"{flag} {path}: {base} is a file, so no {what} can be created under it")
    why = _can_write_in(base)
    if why is not None:
        action = f"create {missing[-1]}" if missing else f"write in {base}"
        raise ConfigError(f"{flag} {path}: cannot {action} ({why}); choose a writable place")


def check_output_file(path: str, flag: str) -> str:
    """``path`` can be written as a file (``--out``, ``--report``); returns it absolute."""
    full = os.path.abspath(os.path.expanduser(path))
    if path.endswith(os.sep) or os.path.isdir(full):
        raise ConfigError(f"{flag} {path} is a folder; give a file name such as "
                          f"{os.path.join(path, 'results.json' if flag == '--out' else 'report.html')}")
    if os.path.lexists(full) and not os.path.isfile(full):
        raise ConfigError(f"{flag} {path} exists and is not a regular file")
    _folder_for(os.path.dirname(full), path, flag, "file")
    if os.path.isfile(full) and not os.access(full, os.W_OK):
        raise ConfigError(f"{flag} {path} exists and cannot be overwritten (permission denied)")
    return full


def check_cache_dir(path: str, flag: str = "--cache-dir") -> str:
    """``path`` is a folder or can be made one; returns it absolute.

    A folder that exists but cannot be written is fine: the store then serves what it
    holds and says, naming the folder, which stage it lacks.
    """
    full = os.path.abspath(os.path.expanduser(path))
    if os.path.lexists(full) and not os.path.isdir(full):
        raise ConfigError(f"{flag} {path} is a file, not a folder")
    if not os.path.isdir(full):
        _folder_for(full, path, flag, "folder")
    return full


__all__ = ["check_cache_dir", "check_output_file"]
