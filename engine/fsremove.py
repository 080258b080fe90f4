"""Removing a directory tree the engine made (a container's directory, a volume's data).

Not `shutil.rmtree`: importing `shutil` (with bz2 and lzma) cost every `up` and `down`
~3 ms, for removals this does with a few system calls. Like rmtree's safe mode it works
relative to directory descriptors and never follows a symbolic link; unlike it, it never
descends into another file system (a mount left on a directory in the tree stays, and so
does the directory: the error says which). A mount is told by its device, so a bind mount
of a directory of the same file system is not one (as for rmtree).
"""

from __future__ import annotations

import errno
import os

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path: str | os.PathLike[str], *, ignore_errors: bool = False) -> None:
    """Removes the directory `path` and everything in it; a missing `path` is fine. The
    first failure is raised once the rest has been removed (with `ignore_errors`, none)."""
    failures: list[OSError] = []
    try:
        top = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        return
    except OSError as exc:
        failures.append(exc)
    else:
        try:
            _empty(top, os.fstat(top).st_dev, os.fspath(path), failures)
        except OSError as exc:  # (the top cannot be read: reported, or ignored, as the rest)
            failures.append(exc)
        finally:
            os.close(top)
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            failures.append(exc)
    if failures and not ignore_errors:
        raise failures[0]


def _empty(dir_fd: int, device: int, shown: str, failures: list[OSError]) -> None:
    with os.scandir(dir_fd) as entries:
        names = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    for name, is_dir in names:
        try:
            if not is_dir:
                os.unlink(name, dir_fd=dir_fd)
                continue
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                if os.fstat(fd).st_dev != device:
                    raise OSError(errno.EBUSY, "a file system is mounted there",
                                  os.path.join(shown, name))
                _empty(fd, device, os.path.join(shown, name), failures)
            finally:
                os.close(fd)
            os.rmdir(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            failures.append(exc)
