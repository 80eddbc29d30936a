"""Reading a secret file, and saying what is wrong with a configuration file.

Every private key, token reference and session secret is read through
:func:`read_private_file`, which refuses a file that group or other may read; every file
checked by a pydantic model reports its problems through :func:`validation_error`, naming
the field's path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from sgx.errors import ConfigError


def validation_error(path: Path, exc: ValidationError) -> ConfigError:
    problems = [
        f"field '{_dotted(err['loc'])}': {err['msg']}" for err in exc.errors(include_url=False)
    ]
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return ConfigError(f"{path}: " + "; ".join(problems[:3]) + more)


def _dotted(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "$"


def read_private_file(path: Path) -> bytes:
    """Read a secret file, refusing one that group or other may access."""
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise ConfigError(
                f"{path}: private file is accessible by group/other (mode {mode & 0o777:04o});"
                " run chmod 600"
            )
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read private file {path}: {exc}") from exc
