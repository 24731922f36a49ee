"""Check where a run will write before it starts: a bad path costs a second, not the whole run.

``--out`` found under a regular file after 161 s of training, or an existing directory
given as ``--out`` that left a stray ``.tmp`` behind: each of these is now one sentence
before any data is loaded. Nothing is created here (no folder, no file is left behind).
"""

from __future__ import annotations

import os
import tempfile

from .errors import ConfigError


def default_cache_dir() -> str:
    """``$DELTAINF_CACHE`` or ``cache/`` beside the package's project root."""
    env = os.environ.get("DELTAINF_CACHE")
    if env:
        return env
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(root, "cache")


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


def check_run_outputs(out: str | None, report: str | None) -> tuple[str | None, str | None]:
    """``run``'s ``--out`` and ``--report``: each writable, and not the same file."""
    out_full = check_output_file(out, "--out") if out else None
    report_full = check_output_file(report, "--report") if report else None
    if out_full is not None and out_full == report_full:
        raise ConfigError("--out and --report name the same file")
    return out_full, report_full


def _flag_values(argv: list[str], flags: tuple[str, ...]) -> dict[str, str]:
    """The last value given to each of ``flags`` (``--flag value`` or ``--flag=value``)."""
    found: dict[str, str] = {}
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name in flags:
            if eq:
                found[name] = value
            elif i + 1 < len(argv):
                found[name] = argv[i + 1]
    return found


def check_paths_in_argv(argv: list[str]) -> None:
    """The paths on a command line, checked before the heavy imports (torch loads in seconds).

    The parsed arguments are checked again with the same functions; this pass only makes a
    bad path fail before anything else is loaded.
    """
    command = argv[0] if argv else ""
    if command == "run":
        given = _flag_values(argv[1:], ("--out", "--report", "--cache-dir"))
        check_run_outputs(given.get("--out"), given.get("--report"))
    elif command == "compare":
        given = _flag_values(argv[1:], ("--out-dir", "--cache-dir"))
        if "--out-dir" in given:
            check_cache_dir(given["--out-dir"], "--out-dir")
    else:
        return
    check_cache_dir(given.get("--cache-dir") or default_cache_dir())


__all__ = ["check_cache_dir", "check_output_file", "check_paths_in_argv", "check_run_outputs", "default_cache_dir"]
