"""Versions recorded in every manifest and run directory (provenance)."""

from __future__ import annotations

import platform


def package_versions(*packages: str) -> dict[str, str | None]:
    """darkshower and Python versions plus the installed version of each package (None if absent)."""
    from importlib.metadata import PackageNotFoundError, version

    from darkshower import __version__

    out: dict[str, str | None] = {"darkshower": __version__, "python": platform.python_version()}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out
