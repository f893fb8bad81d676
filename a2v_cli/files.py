"""Output files: the one safety check and the one placement helper every command that writes uses.

Why: a tool that writes files must never replace what the user has by accident: not an input
(also through a symlink or a hard link), not another output of the same command, and not a file
that appeared while a render or a download was running. Both modes call these before any upload
or render starts, and put every finished file in place through ``place_new``.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from a2v_cli.errors import InputError

# Linux's FICLONE ioctl (_IOW(0x94, 9, int)): a copy-on-write clone on btrfs, XFS, bcachefs...
FICLONE = 0x40049409
# errors of os.link on filesystems without hard links (FAT, some network and FUSE mounts)
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS, errno.EACCES}

Named = tuple[str, Path]  # ("the audio", path): what a file is, for messages


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


def _resolved(path: Path) -> Path:
    try:
        return Path(os.path.abspath(path)).resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name one file: the same resolved path, or the same device and inode."""
    if _resolved(a) == _resolved(b):
        return True
    ia = _identity(a)
    return ia is not None and ia == _identity(b)


def stdin_file() -> Path | None:
    """The regular file behind stdin (``--audio - < talk.wav``), so it counts as an input too."""
    try:
        fd = sys.stdin.fileno()
        import stat

        if stat.S_ISREG(os.fstat(fd).st_mode):
            return Path(f"/proc/self/fd/{fd}") if Path("/proc/self/fd").is_dir() else None
    except (OSError, ValueError, AttributeError):
        return None
    return None


def input_file(source: str | None) -> Path | None:
    """The local file an argument such as ``--audio`` names, if it is one (not a URL, not a name)."""
    if not source:
        return None
    if source == "-":
        return stdin_file()
    if "://" in source:
        return None
    path = Path(source).expanduser()
    return path if path.is_file() else None


def check_input(path: Path, max_bytes: int, limit: str, fix_not_file: str, fix_too_big: str) -> None:
    """An input file exists, is a regular file and is under its size cap: the checks every reader of a photo or a
    clip makes first, with one wording (``limit`` names the cap, e.g. "the limit for a clip")."""
    if not path.exists():
        raise InputError(f"{path} does not exist", "check the path")
    if not path.is_file():
        raise InputError(f"{path} is not a file", fix_not_file)
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(f"{path.name} is {size / 1e6:.0f} MB; {limit} is {max_bytes // 2**20} MiB", fix_too_big)


def output_arg(raw: str, option: str = "-o", example: str = "out.mp4", stdout_ok: bool = False) -> Path:
    """An output option's own text as a path, refusing what ``Path`` would silently change (exit 2).

    Why: ``Path("new/")`` is ``Path("new")``, so ``-o new/`` would write a *file* named ``new``; and ``-o -``
    means stdout to every Unix user, where a video cannot go (its index is written last), so it must not
    become a file named ``-`` either. Commands whose output can be a stream pass ``stdout_ok`` and get
    ``Path("-")``.
    """
    if not raw.strip():
        raise InputError(f"{option} is empty", f"give a file name, e.g. {option} {example}")
    if raw == "-":
        if stdout_ok:
            return Path(raw)
        raise InputError(f"{option} - (stdout) cannot hold a video: an MP4 needs a file",
                         f"give a file name, e.g. {option} {example}")
    unified = raw.replace(os.altsep or os.sep, os.sep)
    if unified.endswith((os.sep, f"{os.sep}.", f"{os.sep}..")):  # `.` and `..` alone: check_directory_target
        raise InputError(f"output {raw} names a directory (it ends with {raw[len(raw.rstrip('/.')):]})",
                         f"give a file name, e.g. {option} {raw.rstrip('/')}/{example}")
    return Path(raw)


MP4_SUFFIXES = (".mp4", ".m4v", ".mov")  # what players accept for an MP4 (ISO BMFF) file


def check_mp4_name(path: Path, option: str = "-o") -> None:
    """A name whose extension says another format (``.webm``, ``.mkv``, ``.gif``, ``.wav``...) is refused.

    Why: the file is always MP4; written under such a name it is a wrong result that players, browsers and
    editors (which go by the extension) reject or misread. No extension, or one no registry knows, is kept.
    """
    import mimetypes

    suffix = path.suffix.lower()
    if not suffix or suffix in MP4_SUFFIXES or mimetypes.guess_type(f"x{suffix}")[0] is None:
        return
    alpha = " (for a WebM with real alpha add --alpha-format webm)" if suffix == ".webm" else ""
    raise InputError(
        f"{option} {path.name}: a2v writes MP4 (H.264) video, not the {suffix} its name says",
        f"name it {path.stem}.mp4{alpha}",
    )


def check_directory_target(path: Path, option: str = "-o", example: str = "out.mp4") -> None:
    """An output that is an existing directory: exit 2 before anything derives other names from it."""
    if path.is_dir() or str(path) in ("", ".", ".."):
        raise InputError(f"output {path} is a directory", f"give a file name, e.g. {option} {example}")


def check_writable(path: Path, force: bool, option: str = "-o", example: str = "out.mp4") -> None:
    """Refuse an existing file unless forced, a directory, and a folder we cannot write into."""
    check_directory_target(path, option, example)
    if path.exists() and not path.is_file():  # a device, FIFO or socket: a rename would replace the node itself
        raise InputError(
            f"output {path} is not a regular file (a device, pipe or socket)",
            f"give {option} a regular file name",
        )
    if (path.exists() or path.is_symlink()) and not force:
        raise InputError(f"output {path} already exists", f"use --force to overwrite it, or choose another {option}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(
            f"cannot write {path}: directory {parent} does not exist", f"create it or choose another {option}"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {path}: directory {parent} is not writable", f"choose another {option}")


def check_outputs(
    outputs: Sequence[Named], inputs: Sequence[Named | tuple[str, None]], force: bool, example: str = "out.mp4",
    names: Callable[[], None] | None = None,
) -> None:
    """The one path-safety check: no output is an input or another output (even with --force), then ``names``
    (the caller's check of what the names say, e.g. check_mp4_name), then writable.

    Refusals are exit 2 with one line naming both files; nothing has been uploaded or rendered yet.
    """
    for _, path in outputs:
        check_directory_target(path, example=example)
    home = _resolved(_history_dir())
    # what a2v keeps in A2V_HOME: the history, the user's avatars (a render reads its pose from there) and models
    owned = ("videos", "server", "avatars", ".avatars-staging", "models")
    kept = [home / d for d in owned] + [home / f"a2v.db{s}" for s in ("", "-wal", "-shm", "-journal")]
    for what, path in outputs:
        if any(_resolved(path).is_relative_to(k) for k in kept):
            raise InputError(
                f"{what} {path} is part of a2v's own data (history, avatars, models) in {home}; "
                "a2v never writes over it",
                "choose an output outside A2V_HOME's videos/, server/, avatars/, models/ and a2v.db",
            )
    for i, (what, path) in enumerate(outputs):
        for what_in, source in inputs:
            if source is not None and same_file(path, source):
                shown = "stdin" if str(source).startswith("/proc/self/fd/") else str(source)
                raise InputError(
                    f"{what} {path} is the same file as {what_in} {shown}; a2v never writes over its input",
                    "choose another output name",
                )
        for what_other, other in outputs[:i]:
            if same_file(path, other):
                raise InputError(
                    f"{what} {path} and {what_other} {other} are the same file", "give each output its own name"
                )
    if names is not None:
        names()
    for _, path in outputs:
        check_writable(path, force, example=example)


def _history_dir() -> Path:
    from a2v_cli import config

    return config.home_path()


def temp_beside(dest: Path) -> Path:
    """A new, unique temp file next to ``dest`` (same filesystem, so the final link or rename is atomic)."""
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent if str(dest.parent) else ".")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make the user's video private
    except (OSError, AttributeError):
        pass
    os.close(fd)
    return Path(name)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def clone_or_copy(src: Path, dest: Path) -> None:
    """Write an independent copy of ``src`` to ``dest``: a reflink where the filesystem has them, else bytes.

    Never a hard link: the user's file must not share data with the history's copy.
    """
    with open(src, "rb") as s, open(dest, "wb") as d:
        try:
            import fcntl

            fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
            return
        except (OSError, ImportError, AttributeError):
            pass
    shutil.copyfile(src, dest)


def place_new(tmp: Path, dest: Path, force: bool) -> Path:
    """Move the finished temp file ``tmp`` to ``dest``; consumes ``tmp`` whatever happens.

    With ``force``, an atomic replace. Without, an exclusive operation: a hard link that fails if
    ``dest`` exists by now (a check made before the render is not enough: another run may finish
    first), or an ``O_EXCL`` copy where the filesystem has no hard links.
    """
    try:
        if force:
            os.replace(tmp, dest)
            return dest
        try:
            os.link(tmp, dest)
        except FileExistsError:
            raise _appeared(dest) from None
        except OSError as err:
            if err.errno not in _NO_LINKS:
                raise
            _exclusive_copy(tmp, dest)
        return dest
    finally:
        tmp.unlink(missing_ok=True)


def _appeared(dest: Path) -> InputError:
    return InputError(
        f"output {dest} appeared while a2v was working and was left as it is",
        "use --force to overwrite it, or choose another output name",
    )


def _exclusive_copy(src: Path, dest: Path) -> None:
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        raise _appeared(dest) from None
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as s:
            shutil.copyfileobj(s, out, 1 << 20)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def place_copy(src: Path, dest: Path, force: bool) -> Path:
    """Put an independent copy of ``src`` at ``dest`` (temp file beside it, then ``place_new``)."""
    tmp = temp_beside(dest)
    try:
        clone_or_copy(src, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return place_new(tmp, dest, force)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM held until the block is done, then delivered (their handlers run as they would have).

    Why: placing outputs is several links and bookkeeping steps, and an interrupt between two of them (a link made,
    not yet recorded) left an output in place while the video was marked failed. Held, the interrupt comes after
    the outputs are all in place. Only the main thread can change signal handlers; elsewhere this does nothing.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[tuple[int, Any]] = []
    wanted = [signal.SIGINT, *([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])]
    previous = {s: signal.signal(s, lambda signum, frame: held.append((signum, frame))) for s in wanted}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if held:
            signum, frame = held[0]
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)  # raises KeyboardInterrupt (or the CLI's Terminated) here
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)


def place_all(pairs: Sequence[tuple[Path, Path]], force: bool) -> list[Path]:
    """``place_copy`` for several outputs, all or none: a refusal removes the ones this call created."""
    done: list[Path] = []
    try:
        for src, dest in pairs:
            done.append(place_copy(src, dest, force))
    except BaseException:
        if not force:
            for path in done:
                path.unlink(missing_ok=True)
        raise
    return done


def write_text_new(dest: Path, text: str, force: bool) -> Path:
    """Write ``text`` to ``dest`` through a temp file and ``place_new``."""
    tmp = temp_beside(dest)
    try:
        tmp.write_text(text, encoding="utf-8")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return place_new(tmp, dest, force)
