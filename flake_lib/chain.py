"""The notebook chain: ``./run_all.sh`` = ``python -m flake_lib.chain``.

Executes ``notebooks/NN-*.ipynb`` in order with papermill, passing each notebook the parameters of
``params/<profile>.yaml`` that it declares, plus ``profile``, ``results_dir`` and ``data_mirror``.
Executed copies go to ``results/<profile>/executed/``; the first failing notebook stops the chain
with its failing cell's error and the path of its executed copy. After the last notebook, with every
notebook's time and commit recorded, the chain writes ``REPORT.md`` (:mod:`flake_lib.report`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import yaml

from . import data, determinism, report, results
from .progress import LOG_ENV, papermill_options, watch_notebook

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PARAMS_DIR = REPO_ROOT / "params"
#: Parameters the chain itself fills in for every notebook that declares them.
CHAIN_PARAMETERS = ("profile", "results_dir", "data_mirror")
KERNEL_NAME = "flake"
#: Notebooks that train models and rewrite ``accuracy/*.json``: before they run, the chain keeps the
#: numbers they overwrite (``provenance.json: previous_run``) so REPORT.md can say how far they moved.
RETRAINING_NOTEBOOKS = ("02", "03")
#: The profile whose results the README shows (its tables are rewritten after a run that includes
#: notebook 05, the one that reads every result).
README_PROFILE = "quick"


class ChainError(RuntimeError):
    """A wrong profile, parameter or notebook selection, or a notebook that failed."""


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))


def load_profile(name: str) -> dict:
    """The parameters of ``params/<name>.yaml`` (a flat mapping of literals)."""
    path = PARAMS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ChainError(f"unknown profile {name!r}; available: {', '.join(available_profiles())}")
    params = yaml.safe_load(path.read_text()) or {}
    if not isinstance(params, dict):
        raise ChainError(f"{path} must hold a mapping of parameter names to values")
    return params


def all_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]-*.ipynb"))


def select_notebooks(only: str | None = None) -> list[Path]:
    """All notebooks in order, or those whose number is in ``only`` (``"02"`` or ``"00,02"``)."""
    notebooks = all_notebooks()
    if not only:
        return notebooks
    wanted = [w.strip().zfill(2) for w in only.split(",") if w.strip()]
    by_number = {nb.name[:2]: nb for nb in notebooks}
    unknown = [w for w in wanted if w not in by_number]
    if unknown:
        raise ChainError(f"--only {only}: no notebook numbered {', '.join(unknown)}; available: "
                         + ", ".join(nb.stem for nb in notebooks))
    return [by_number[w] for w in sorted(set(wanted))]


def declared_parameters(notebook: Path) -> dict:
    """The parameters a notebook declares in its ``parameters`` cell (papermill's inspection)."""
    import papermill

    return papermill.inspect_notebook(str(notebook))


def notebook_defaults(notebooks: list[Path]) -> tuple[dict, dict]:
    """Every parameter's default, written once, in the ``parameters`` cell of the notebooks that declare
    it: ``(defaults, differing)``, where ``differing`` maps a parameter whose notebooks give it different
    defaults to ``{notebook: default}`` (each notebook keeps its own) and ``defaults`` holds the rest."""
    import ast

    found: dict[str, dict[str, object]] = {}
    for nb in notebooks:
        for name, parameter in declared_parameters(nb).items():
            found.setdefault(name, {})[nb.stem] = ast.literal_eval(parameter["default"])
    defaults, differing = {}, {}
    for name, by_notebook in found.items():
        values = list(by_notebook.values())
        if all(v == values[0] for v in values):
            defaults[name] = values[0]
        else:
            differing[name] = by_notebook
    return defaults, differing


def resolved_profile(profile: str, overrides: dict | None = None) -> dict:
    """A profile as its notebooks run it: the notebooks' defaults (:func:`notebook_defaults`) with
    ``params/<profile>.yaml``'s overrides on top; a parameter whose notebooks differ appears only when
    the profile overrides it."""
    defaults, _ = notebook_defaults(all_notebooks())
    return {**defaults, **(load_profile(profile) if overrides is None else overrides)}


def check_parameters(params: dict, profile: str, notebooks: list[Path]) -> None:
    """Every key of the profile must be declared by at least one notebook of the project."""
    declared = set(CHAIN_PARAMETERS)
    for nb in notebooks:
        declared |= set(declared_parameters(nb))
    unknown = sorted(set(params) - declared)
    if unknown:
        raise ChainError(f"params/{profile}.yaml: unknown parameter(s) {', '.join(unknown)}: no "
                         f"notebook declares them (declared: {', '.join(sorted(declared))})")


def _shown_path(path: str) -> str:
    """``path`` as recorded in provenance: relative to the repository (``../shared/data``), symlinks
    kept, so that the record does not name one machine's folders."""
    return os.path.relpath(os.path.abspath(os.path.expanduser(path)), REPO_ROOT)


def _kernel_name() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL_NAME if KERNEL_NAME in KernelSpecManager().find_kernel_specs() else "python3"


#: The first line of a REPORT.md that a later, failed run left standing (:func:`incomplete_run`).
STALE_MARK = "> **Stale report.**"


def incomplete_run(out: Path, failed: Path, not_run: list[Path]) -> str:
    """After ``failed`` stopped the chain: record it in ``provenance.json`` (``chain_incomplete``), mark
    an existing ``REPORT.md`` as stale at its top (it was not rebuilt, and the results folder now mixes
    this run's outputs with an earlier run's), and return what to tell the user."""
    prov = results.read_metrics(out / "provenance.json")
    when = prov.get("updated_utc", "?")
    commit = (prov.get("git_commit") or "?")[:10]
    prov["chain_incomplete"] = {"failed": failed.stem, "not_run": [nb.stem for nb in not_run],
                                "git_commit": prov.get("git_commit"), "utc": when}
    results.write_metrics(prov, out / "provenance.json")
    skipped = ", ".join(nb.stem for nb in not_run) or "none"
    path = out / "REPORT.md"
    lines = [f"  not run: {skipped}"]
    if path.is_file():
        text = path.read_text()
        if text.startswith(STALE_MARK):  # an earlier failed run's mark: replace it
            text = text.split("\n\n", 1)[1] if "\n\n" in text else ""
        mark = (f"{STALE_MARK} A later run of this profile (commit `{commit}`, {when}) failed in "
                f"`{failed.stem}`; not run: {skipped}. This report was not rebuilt: it describes an earlier "
                "run, while the folder holds that later run's partial outputs. Rerun `./run_all.sh` to "
                "rebuild it.")
        path.write_text(mark + "\n\n" + text)
        lines.append(f"  REPORT.md was NOT rebuilt: {path} is an earlier run's (marked stale at its top)")
    else:
        lines.append("  REPORT.md was NOT written")
    return "\n".join(lines)


def run_chain(profile: str = "quick", only: str | None = None, mirror: str | None = None,
              results_root: str | os.PathLike | None = None, progress: bool = True,
              seed: int | None = None, cell_timeout_s: float | None = None) -> list[Path]:
    """Execute the selected notebooks in order; return the paths of the executed copies.

    ``cell_timeout_s`` bounds every cell (None: no bound): a cell that runs longer stops the chain with
    an error that names the notebook and the cell, instead of letting a hang run on unseen.

    ``seed`` replaces the profile's seed; when it differs from it, results go to
    ``results/<profile>-seed<seed>/`` so that the profile's own results stay as they are.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from .serving import pinning

    overrides = load_profile(profile)  # only what differs from the notebooks' defaults
    cpus, quota = pinning.current(), pinning.cpu_quota()
    if pinning.fit_to_quota(quota) != cpus:  # the kernels inherit the CPU set
        print(f"CPU quota of {quota:g} CPUs on {len(cpus)} CPUs: the notebooks run on CPUs "
              f"{pinning.current()}", flush=True)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a local Ray reports nothing to anyone
    check_parameters(overrides, profile, all_notebooks())
    params = resolved_profile(profile, overrides)
    notebooks = select_notebooks(only)
    if not notebooks:
        raise ChainError(f"no notebooks found in {NOTEBOOKS_DIR}")
    given_mirror = mirror or os.environ.get(data.MIRROR_ENV)
    mirror_path = data.resolve_mirror(mirror)
    if mirror_path is not None:
        os.environ[data.MIRROR_ENV] = str(mirror_path)  # the kernels inherit it
    # the kernels import this checkout's flake_lib, even from an environment installed for another one
    # (FLAKE_VENV shared between clones): the results then record the code that made them
    root = str(NOTEBOOKS_DIR.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join([root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                         if p and p != root])
    folder = profile
    if seed is not None and seed != params.get("seed"):
        params["seed"], overrides["seed"], folder = seed, seed, f"{profile}-seed{seed}"
        if results_root is not None:  # beside the given folder, where REPORT.md looks for it
            results_root = Path(results_root).parent / f"{Path(results_root).name}-seed{seed}"
    out = results.results_dir(folder, results_root)
    executed_dir = out / "executed"
    executed_dir.mkdir(parents=True, exist_ok=True)
    chain_values = {"profile": profile, "data_mirror": str(mirror_path or ""),
                    "results_dir": os.path.relpath(out, NOTEBOOKS_DIR)}
    retrains = any(nb.name[:2] in RETRAINING_NOTEBOOKS for nb in notebooks)
    previous = determinism.snapshot(out) if retrains else None
    _, differing = notebook_defaults(all_notebooks())
    results.write_provenance(out, profile=profile, seed=params.get("seed"), parameters=params,
                             profile_overrides=overrides,
                             notebook_defaults={k: v for k, v in differing.items() if k not in overrides},
                            data_source={"mirror": _shown_path(given_mirror)
                                         if mirror_path else None})
    prov = results.read_metrics(out / "provenance.json")
    if previous is not None:
        prov["previous_run"] = previous
    for nb in notebooks:  # forget an earlier run's record of the notebooks this run executes
        for key in ("chain_seconds", "chain_commits"):
            prov.get(key, {}).pop(nb.stem, None)
    results.write_metrics(prov, out / "provenance.json")
    kernel, executed = _kernel_name(), []
    for i, notebook in enumerate(notebooks, 1):
        declared = declared_parameters(notebook)
        # the profile's overrides (the notebook's own defaults do the rest) and the chain's values
        values = {k: v for k, v in {**overrides, **chain_values}.items() if k in declared}
        target = executed_dir / notebook.name
        log = executed_dir / f"{notebook.stem}.log"  # training logs go here, not into the executed cells
        log.unlink(missing_ok=True)
        os.environ[LOG_ENV] = str(log)
        print(f"[{i}/{len(notebooks)}] {notebook.stem} (profile {profile})", flush=True)
        start = time.perf_counter()
        try:
            # the kernel draws no bars; the terminal shows its status line (flake_lib.progress)
            with watch_notebook(f"[{i}/{len(notebooks)}] {notebook.stem}", enabled=progress):
                papermill.execute_notebook(str(notebook), str(target), parameters=values,
                                           kernel_name=kernel, cwd=str(NOTEBOOKS_DIR), log_output=False,
                                           execution_timeout=cell_timeout_s, **papermill_options())
        except PapermillExecutionError as error:
            raise ChainError(f"{notebook.name} failed in cell [{error.exec_count}]: "
                             f"{error.ename}: {error.evalue}\n  executed copy: {target}\n"
                             + incomplete_run(out, notebook, notebooks[i:])) from None
        except TimeoutError as error:  # nbclient's CellTimeoutError: the message quotes the cell
            raise ChainError(f"{notebook.name}: a cell ran past {cell_timeout_s:g} s (--cell-timeout)\n"
                             f"  {str(error).strip()}\n  executed copy so far: {target}\n"
                             + incomplete_run(out, notebook, notebooks[i:])) from None
        except KeyboardInterrupt:
            print("\ninterrupted\n" + incomplete_run(out, notebook, notebooks[i:]), file=sys.stderr, flush=True)
            raise
        finally:
            os.environ.pop(LOG_ENV, None)
        seconds = round(time.perf_counter() - start, 1)
        print(f"    done in {seconds:.1f} s -> {target}", flush=True)
        executed.append(target)
        # recorded as each notebook ends; a partial rerun (--only) keeps the record of the notebooks
        # it did not run
        prov = results.read_metrics(out / "provenance.json")
        prov.setdefault("chain_seconds", {})[notebook.stem] = seconds
        prov.setdefault("chain_commits", {})[notebook.stem] = {"git_commit": prov["git_commit"],
                                                               "git_dirty": prov["git_dirty"]}
        results.write_metrics(prov, out / "provenance.json")
    # after the last notebook, so that every notebook's rows, times and commits are in it
    prov = results.read_metrics(out / "provenance.json")
    if prov.pop("chain_incomplete", None) is not None:
        results.write_metrics(prov, out / "provenance.json")
    print(f"    REPORT.md -> {report.write_report(out)}", flush=True)
    # the README block follows REPORT.md after any run into results/quick, partial (--only) runs too
    readme_run = (profile, folder, results_root) == (README_PROFILE, profile, None)
    if readme_run and report.update_readme(REPO_ROOT / "README.md", out):
        print("    README.md: results tables rewritten from this run", flush=True)
    return executed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="run_all.sh", description="Run Flake's notebooks in order with papermill.")
    parser.add_argument("--profile", default="quick",
                        help="parameter set params/<profile>.yaml: "
                             + ", ".join(available_profiles()) + " (default: quick)")
    parser.add_argument("--only", metavar="NN[,NN]", help="run only these notebooks, e.g. 02 or 00,02")
    parser.add_argument("--mirror", metavar="DIR",
                        help=f"local data mirror laid out like shared/data (default: ${data.MIRROR_ENV})")
    parser.add_argument("--seed", type=int, metavar="N",
                        help="replace the profile's seed; results then go to results/<profile>-seedN/")
    parser.add_argument("--cell-timeout", type=float, metavar="S",
                        help="stop the chain with an error when one cell runs longer than S seconds "
                             "(default: no limit)")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide the status line of the running notebook (model, epoch, ETA, loss)")
    args = parser.parse_args(argv)
    if args.profile not in available_profiles():
        parser.error(f"unknown profile {args.profile!r}; available: {', '.join(available_profiles())}")
    try:
        start = time.perf_counter()
        executed = run_chain(args.profile, args.only, args.mirror, progress=not args.no_progress,
                             seed=args.seed, cell_timeout_s=args.cell_timeout)
    except (ChainError, data.DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Ran {len(executed)} notebook(s) in {time.perf_counter() - start:.0f} s; results in "
          f"{executed[0].parent.parent if executed else results.results_dir(args.profile)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
