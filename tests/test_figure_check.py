import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from flake_lib import figure_check, results  # noqa: E402


def test_a_clean_figure_has_no_defect():
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar([0, 1], [2, 3], color="#0072B2")
    ax.scatter([0], [2.5], marker="*", color="black")
    ax.set_xticks([0, 1], ["SRP", "Flake"])
    ax.set_title("clean")
    assert figure_check.defects(fig) == []
    plt.close(fig)


def test_overlapping_tick_labels_are_found():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.set_xticks(range(6), [f"a long method name {i}" for i in range(6)])
    found = figure_check.defects(fig)
    assert any("x tick labels" in d for d in found)
    plt.close(fig)


def test_a_star_in_a_bar_of_its_colour_is_found():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar([0], [3], color="black")
    ax.scatter([0], [1.5], marker="*", s=140, color="black")
    assert any("colour of the bar" in d for d in figure_check.defects(fig))
    plt.close(fig)


def test_overlapping_titles_are_found():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_title("the axes' own title")
    fig.suptitle("a suptitle drawn over it", y=0.9)
    assert any("titles" in d for d in figure_check.defects(fig))
    plt.close(fig)


def test_save_figure_warns_on_a_defect(tmp_path):
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar([0], [3], color="black")
    ax.scatter([0], [1.5], color="black")
    with pytest.warns(figure_check.FigureDefectWarning, match="colour of the bar"):
        results.save_figure(fig, tmp_path / "bad")
    plt.close(fig)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results.save_figure(fig, tmp_path / "good")
    assert (tmp_path / "good.png").is_file()
