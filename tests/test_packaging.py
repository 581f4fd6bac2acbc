"""What the package says about itself agrees with what is installed and shipped."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import mxf_remote

ROOT = Path(__file__).resolve().parent.parent


def test_the_version_is_one_value() -> None:
    """The installed metadata's version is mxf_remote.__version__ (pyproject reads it there)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["hatch"]["version"]["path"] == "mxf_remote/__init__.py"
    assert metadata.version("mxf-remote") == mxf_remote.__version__


def test_every_manual_page_is_installed() -> None:
    """Each page of man/ goes to share/man/manN/ in the wheel, N its section; no others."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shared = project["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    pages = {f"man/{page.name}" for page in (ROOT / "man").iterdir()}
    assert set(shared) == pages
    for source, target in shared.items():
        name = Path(source).name
        assert target == f"share/man/man{Path(name).suffix[1:]}/{name}"


def test_every_program_has_its_page() -> None:
    """Every console script of the package has a manual page of the same name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pages = {page.stem for page in (ROOT / "man").glob("*.8")}
    assert set(project["project"]["scripts"]) <= pages
