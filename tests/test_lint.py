"""The code base passes ruff with the configuration in pyproject.toml ([tool.ruff])."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing_in_the_library_and_tests():
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.is_file():
        pytest.fail(f"ruff is not installed in {ruff.parent} (it is a pinned test dependency in pyproject.toml)")
    result = subprocess.run([str(ruff), "check", "--no-cache", "--output-format", "concise", "flake_lib", "tests"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"ruff reports:\n{result.stdout}{result.stderr}"


def test_ruff_configuration_is_the_projects():
    import tomllib

    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["ruff"]
    assert config["line-length"] == 120 and {"E", "F", "I"} <= set(config["lint"]["select"])


def test_license_and_citation_match_the_package():
    import tomllib

    import yaml

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    license_text = (REPO_ROOT / "LICENSE").read_text()
    assert project["license"]["text"] == "MIT" and license_text.startswith("MIT License")
    assert "Copyright (c) 2026 The Flake authors" in license_text
    citation = yaml.safe_load((REPO_ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "MIT"
    assert citation["version"] == project["version"]
    paper = citation["preferred-citation"]
    assert paper["title"].startswith("A Fault-Tolerant and Real-Time Framework")
    assert [a["family-names"] for a in paper["authors"]] == ["Liu", "Geng", "Wang", "Liu"]
    assert paper in citation["references"]


def test_design_references_point_to_the_projects_design_document():
    """Every "DESIGN.md §N" in the library, the notebooks and the README names docs/DESIGN.md and a
    section that exists there."""
    import re

    design = (REPO_ROOT / "docs" / "DESIGN.md").read_text()
    sections = set(re.findall(r"^## (\d+)\. ", design, flags=re.M))
    assert {"1", "2", "3", "4", "5", "6", "7", "8"} <= sections
    files = [*(REPO_ROOT / "flake_lib").rglob("*.py"), *(REPO_ROOT / "notebooks").glob("*.ipynb"),
             REPO_ROOT / "README.md"]
    wrong = []
    for path in files:
        for match in re.finditer(r"([\w./-]*)DESIGN\.md(?: §(\d+))?", path.read_text()):
            if match[1] != "docs/" or (match[2] and match[2] not in sections):
                wrong.append(f"{path.relative_to(REPO_ROOT)}: {match[0]}")
    assert not wrong, "references to a design document that is not docs/DESIGN.md:\n" + "\n".join(wrong)
