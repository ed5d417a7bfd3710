"""Safe names and contained paths: what keeps a user's identifier or path from writing or reading elsewhere.

An identifier that becomes part of a file name (a case id that names a copied image, say) must match
`SAFE_NAME`: a letter or digit, then letters, digits, '.', '_' or '-', at most `MAX_NAME` characters
and never '..'. So it names one file in the folder it is written to: no '/', no '..', no leading '.'
(hidden files, the temporary folders of `mint.core.io`), no absolute path. A path a user declares
relative to a folder (an image path in a manifest) must stay inside that folder once '..' is
resolved; an absolute path is refused unless the config allows it. The check is lexical: a symbolic
link inside the folder is followed wherever it points, as the user who made it meant.

    python -c "from mint.core.paths import check_name; check_name('../x', 'manifest.csv row 2')"
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mint.core.io import MintError

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_NAME = 200  # characters; file systems allow 255 bytes, and a suffix is added
SAFE_NAME_RULE = (f"a letter or digit, then letters, digits, '.', '_' or '-' (at most {MAX_NAME} characters, "
                  "no '..')")


def is_safe_name(value: object) -> bool:
    return (isinstance(value, str) and SAFE_NAME.fullmatch(value) is not None and ".." not in value
            and len(value) <= MAX_NAME)


def check_name(value: object, where: str, what: str = "case_id") -> str:
    """`value` if it is a safe file name (`SAFE_NAME_RULE`), else MintError naming `where`, `what` and the value."""
    if not is_safe_name(value):
        raise MintError(f"{where}: {what} {value!r} cannot name a file; expected {SAFE_NAME_RULE}")
    return value


def resolve_inside(relative: str | os.PathLike, base: str | os.PathLike, where: str, *,
                   allow_absolute: bool = False, key: str = "cohort.allow_absolute_paths") -> Path:
    """`base / relative`, refused (MintError naming `where` and the path) if it leaves `base`.

    An absolute `relative` is refused unless `allow_absolute` (the config key `key`) allows it; a relative
    one must stay inside `base` either way.
    """
    # On strings, not Path objects: a manifest of 100,000 rows is resolved at every workflow start
    # (`Application.input_files`), and pathlib's parsing made that 10 s.
    rel, folder = os.fspath(relative), os.fspath(base)
    if os.path.isabs(rel) or os.path.splitdrive(rel)[0]:
        if not allow_absolute:
            raise MintError(f"{where}: absolute path {rel!r}; paths are relative to {base} (set config "
                            f"key '{key}: true' to allow absolute paths)")
        return Path(rel)
    if not _below(os.path.normpath(os.path.join(folder, rel)), os.path.normpath(folder)):
        raise MintError(f"{where}: path {rel!r} is not inside the folder it is relative to "
                        f"({base}); expected a file in that folder or below it")
    return Path(folder, rel)


def _below(path: str, folder: str) -> bool:
    """Whether the normalised `path` lies strictly below the normalised `folder` (lexically)."""
    if folder == os.curdir:  # a relative path is below the working directory unless it climbs out of it
        return not (os.path.isabs(path) or path == os.curdir or path == os.pardir
                    or path.startswith(os.pardir + os.sep))
    return path.startswith(folder if folder.endswith(os.sep) else folder + os.sep) and path != folder


def file_in(folder: str | os.PathLike, name: str, suffix: str = "", what: str = "case_id") -> Path:
    """`folder / (name + suffix)`, the name checked (`check_name`): where a step writes a file named by an id."""
    return Path(folder) / f"{check_name(name, str(folder), what)}{suffix}"
