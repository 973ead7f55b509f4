"""What a bulk run reads: SOURCE (a directory, a glob, a list file or one file) -> the list of input paths,
and the bytes of one input. Paths are local or URIs that pyarrow's filesystems read (s3://, gs://, ...).

An input is named by the string listed here (an absolute path, or the URI); resume matches on that name.
"""

from __future__ import annotations

import os
import re
from functools import cache

import pyarrow.fs as pafs

LIST_SUFFIXES = (".txt", ".lst", ".list")
_GLOB_CHARS = re.compile(r"[*?\[]")


class SourceError(ValueError):
    """SOURCE names nothing that can be listed (missing directory or list file, a glob that matches nothing)."""


class TooLarge(ValueError):
    """An input over the byte limit (found from its size, before reading it)."""


@cache
def _filesystem(root: str) -> pafs.FileSystem:
    """One filesystem per scheme://bucket (an S3 or GCS client is costly to create)."""
    return pafs.FileSystem.from_uri(root)[0]


def resolve(name: str) -> tuple[pafs.FileSystem, str]:
    """An input name -> (filesystem, path inside it)."""
    if "://" not in name:
        return _filesystem("file:///"), os.path.abspath(name)
    scheme, rest = name.split("://", 1)
    if scheme == "file":
        return _filesystem("file:///"), rest
    return _filesystem(f"{scheme}://{rest.split('/', 1)[0]}"), rest


def _name(root: str, fs_path: str) -> str:
    """A path from a listing -> the input name, in the form SOURCE was given (local path or URI)."""
    if "://" not in root or root.startswith("file://"):
        return fs_path
    return f"{root.split('://', 1)[0]}://{fs_path}"


def read_bytes(name: str, max_bytes: int) -> bytes:
    """The input's bytes. Raises OSError if it cannot be read, `TooLarge` before reading past `max_bytes`."""
    fs, path = resolve(name)
    with fs.open_input_file(path) as f:
        size = f.size()
        if size > max_bytes:
            raise TooLarge(f"file is {size} bytes, the limit is {max_bytes}")
        return f.read()


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Shell-style glob: `*` and `?` stay inside one path component, `**/` spans any number of them."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _visible(fs_path: str, base: str) -> bool:
    """Skip hidden files and anything inside hidden directories (.DS_Store, .thumbnails/, ...) below `base`."""
    relative = fs_path[len(base) :].lstrip("/")
    return not any(part.startswith(".") for part in relative.split("/"))


def _list_tree(fs: pafs.FileSystem, base: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    return [i.path for i in infos if i.type == pafs.FileType.File and _visible(i.path, base)]


def _list_file_entries(source: str, fs: pafs.FileSystem, path: str) -> list[str]:
    with fs.open_input_stream(path) as f:
        lines = f.read().decode("utf-8").splitlines()
    parent = source.rsplit("/", 1)[0] if "/" in source else "."
    names = []
    for line in (raw.strip() for raw in lines):
        if not line or line.startswith("#"):
            continue
        names.append(line if "://" in line or os.path.isabs(line) else f"{parent}/{line}")
    return [os.path.abspath(n) if "://" not in n else n for n in names]


def list_inputs(source: str, extensions: tuple[str, ...] = ()) -> list[str]:
    """Every input SOURCE names, sorted, each once.

    A directory: every file below it (hidden ones skipped). A glob (`photos/**/*.jpg`): the files it matches.
    A `.txt`/`.lst`/`.list` file: one path or URI a line (blank lines and `#` comments skipped; relative paths
    are relative to the list file). Any other file: itself. `extensions` (e.g. ("jpg", "png")) keeps only those.
    """
    root = source if "://" in source else os.path.abspath(source)
    fs, path = resolve(root)
    if _GLOB_CHARS.search(path):
        parts = path.split("/")
        fixed = next(i for i, part in enumerate(parts) if _GLOB_CHARS.search(part))
        base = "/".join(parts[:fixed]) or "/"
        regex = _glob_regex(path)
        found = [p for p in _list_tree(fs, base) if regex.match(p)] if _is_dir(fs, base) else []
        names = [_name(root, p) for p in found]
        if not names:
            raise SourceError(f"{source!r} matches no file")
    else:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            names = [_name(root, p) for p in _list_tree(fs, path)]
        elif info.type == pafs.FileType.File:
            names = _list_file_entries(root, fs, path) if path.lower().endswith(LIST_SUFFIXES) else [root]
        else:
            raise SourceError(f"{source!r} does not exist")
    if extensions:
        wanted = tuple("." + e.lower().lstrip(".") for e in extensions)
        names = [n for n in names if n.lower().endswith(wanted)]
    return sorted(set(names))


def _is_dir(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.Directory
