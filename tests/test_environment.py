"""environment.yml and pyproject.toml describe the same pinned environment."""

import re
import tomllib

import yaml
from conftest import REPO_ROOT


def _pins(requirements):
    pins = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([\w.]+)", requirement.strip())
        assert match, f"{requirement!r} is not pinned with =="
        pins[match.group(1).lower()] = match.group(2)
    return pins


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pyproject = _pins(project["dependencies"] + sum(project["optional-dependencies"].values(), []))
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "environment.yml needs exactly one pip: section"
    assert _pins(pip_lists[0]) == pyproject
    assert "python=3.11" in env["dependencies"]


def test_required_packages_are_pinned():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins(project["dependencies"])
    for name in ("torch", "torchvision", "openvino", "papermill", "jupyterlab", "pandas", "seaborn", "tqdm"):
        assert name in pins, f"{name} missing from pyproject.toml"
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
