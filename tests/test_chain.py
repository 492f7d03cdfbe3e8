"""run_all.sh / flake_lib.chain: profiles, parameters, notebook selection and clear errors."""

import ast
import json
import subprocess

import pytest
from conftest import REPO_ROOT

from flake_lib import chain, data, results


def test_every_notebook_parameter_is_documented():
    notebooks = chain.all_notebooks()
    assert notebooks, "no notebooks found"
    for nb in notebooks:
        cells = [c for c in json.loads(nb.read_text())["cells"]
                 if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(cells) == 1, f"{nb.name} needs exactly one cell tagged 'parameters'"
        assigned = {t.id for node in ast.parse("".join(cells[0]["source"])).body
                    for t in ([node.target] if isinstance(node, ast.AnnAssign) else node.targets)}
        inspected = chain.declared_parameters(nb)
        assert set(inspected) == assigned, f"{nb.name}: papermill does not see {assigned - set(inspected)}"
        assert all(p["help"] for p in inspected.values()), f"{nb.name}: a parameter has no comment"
        assert {"profile", "results_dir"} <= assigned  # data_mirror only where a notebook reads data


def test_notebooks_are_committed_without_outputs():
    for nb in chain.all_notebooks():
        for cell in json.loads(nb.read_text())["cells"]:
            assert not cell.get("outputs"), f"{nb.name} has outputs"


def test_profiles_only_hold_declared_parameters():
    for profile in ("smoke", "quick", "paper"):
        chain.check_parameters(chain.load_profile(profile), profile, chain.all_notebooks())


def test_unknown_profile_parameter_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "bad.yaml").write_text("seed: 0\nepochz: 3\n")
    monkeypatch.setattr(chain, "PARAMS_DIR", tmp_path)
    with pytest.raises(chain.ChainError, match="unknown parameter.*epochz"):
        chain.run_chain("bad")


def test_unknown_profile_and_notebook(monkeypatch):
    with pytest.raises(chain.ChainError, match="unknown profile 'nope'.*smoke"):
        chain.load_profile("nope")
    with pytest.raises(chain.ChainError, match="no notebook numbered 97"):
        chain.select_notebooks("00,97")
    assert [nb.name[:2] for nb in chain.select_notebooks("0")] == ["00"]


def test_missing_mirror_stops_before_any_notebook(tmp_path):
    with pytest.raises(data.DatasetError, match="does not exist"):
        chain.run_chain("smoke", mirror=str(tmp_path / "missing"), results_root=tmp_path / "r")
    assert not (tmp_path / "r" / "executed").exists()


def _run_all(*args):
    return subprocess.run(["bash", str(REPO_ROOT / "run_all.sh"), *args], capture_output=True,
                          text=True, timeout=600)


def test_run_all_rejects_a_wrong_profile_and_option():
    wrong = _run_all("--profile", "nope")
    assert wrong.returncode != 0 and "unknown profile 'nope'" in wrong.stderr
    option = _run_all("--epochs", "3")
    assert option.returncode != 0 and "unrecognized arguments: --epochs" in option.stderr


def _toy_chain(tmp_path, monkeypatch, notebooks: list[tuple[str, str]]) -> None:
    """The chain pointed at toy notebooks ``(name, source)`` (a parameters cell, then the source) and an
    empty smoke profile, all under ``tmp_path``."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name, source in notebooks:
        nb = new_notebook(cells=[new_code_cell("profile = 'smoke'  # profile"), new_code_cell(source)])
        nb.cells[0].metadata["tags"] = ["parameters"]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / f"{name}.ipynb")
    params = tmp_path / "params"
    params.mkdir()
    (params / "smoke.yaml").write_text("{}\n")
    monkeypatch.setattr(chain, "NOTEBOOKS_DIR", folder)
    monkeypatch.setattr(chain, "PARAMS_DIR", params)


def test_failing_notebook_stops_the_chain(tmp_path, monkeypatch):
    _toy_chain(tmp_path, monkeypatch, [("00-ok", "x = 1"), ("01-fails", "raise RuntimeError('boom')"),
                                       ("02-never", "")])
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "REPORT.md").write_text("# An earlier run's report\n")
    with pytest.raises(chain.ChainError) as failure:
        chain.run_chain("smoke", results_root=tmp_path / "r", progress=False)
    message = str(failure.value)
    assert "01-fails.ipynb failed" in message and "RuntimeError: boom" in message
    assert str(tmp_path / "r" / "executed" / "01-fails.ipynb") in message
    assert (tmp_path / "r" / "executed" / "00-ok.ipynb").is_file()
    assert not (tmp_path / "r" / "executed" / "02-never.ipynb").exists()
    # what did not run, and that the report standing there is not this run's
    assert "not run: 02-never" in message and "REPORT.md was NOT rebuilt" in message
    report = (tmp_path / "r" / "REPORT.md").read_text()
    assert report.startswith(chain.STALE_MARK) and "failed in `01-fails`" in report
    assert report.endswith("# An earlier run's report\n")
    assert results.read_metrics(tmp_path / "r" / "provenance.json")["chain_incomplete"]["not_run"] == ["02-never"]
    # a second failure replaces the mark rather than stacking marks
    with pytest.raises(chain.ChainError):
        chain.run_chain("smoke", results_root=tmp_path / "r", progress=False)
    assert (tmp_path / "r" / "REPORT.md").read_text().count(chain.STALE_MARK) == 1


def test_a_cell_past_the_timeout_stops_the_chain_and_names_the_cell(tmp_path, monkeypatch):
    _toy_chain(tmp_path, monkeypatch, [("00-hangs", "import time\ntime.sleep(60)  # a hang"), ("01-never", "")])
    with pytest.raises(chain.ChainError) as failure:
        chain.run_chain("smoke", results_root=tmp_path / "r", progress=False, cell_timeout_s=3)
    message = str(failure.value)
    assert "00-hangs.ipynb: a cell ran past 3 s" in message and "time.sleep(60)" in message
    assert "not run: 01-never" in message


def test_profiles_hold_only_what_differs_from_the_notebooks_defaults():
    """Every default is written once, in its notebook's parameters cell; run top to bottom in JupyterLab a
    notebook does what ./run_all.sh does by default (quick overrides nothing), and a profile holds only
    what differs."""
    defaults, differing = chain.notebook_defaults(chain.all_notebooks())
    assert chain.load_profile("quick") == {} and chain.resolved_profile("quick") == defaults
    for profile in chain.available_profiles():
        for name, value in chain.load_profile(profile).items():
            assert name in differing or defaults.get(name) != value, \
                f"params/{profile}.yaml: {name} repeats the notebooks' default {value!r}"
    assert chain.resolved_profile("paper")["parity_batch_groups"] == defaults["parity_batch_groups"]


def test_kernels_import_the_checkout_that_runs_them(tmp_path, monkeypatch):
    """A notebook's kernel imports the flake_lib of the checkout the chain belongs to, also when the
    environment was installed for another checkout (its editable install points elsewhere)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (tmp_path / "flake_lib").mkdir()
    (tmp_path / "flake_lib" / "__init__.py").write_text("CHECKOUT = 'the one that runs'\n")
    nb = new_notebook(cells=[new_code_cell("profile = 'smoke'  # profile"),
                             new_code_cell("import flake_lib\nassert flake_lib.CHECKOUT == 'the one that runs'")])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, notebooks / "00-imports.ipynb")
    params = tmp_path / "params"
    params.mkdir()
    (params / "smoke.yaml").write_text("{}\n")
    monkeypatch.setattr(chain, "NOTEBOOKS_DIR", notebooks)
    monkeypatch.setattr(chain, "PARAMS_DIR", params)
    monkeypatch.setenv("PYTHONPATH", "")
    chain.run_chain("smoke", results_root=tmp_path / "r", progress=False)
    assert (tmp_path / "r" / "executed" / "00-imports.ipynb").is_file()
