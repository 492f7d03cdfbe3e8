"""The method style table: one distinct, colour-blind-safe look per method, the same in every figure."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from flake_lib import methods, style  # noqa: E402


def test_every_method_has_its_own_colour_marker_and_okabe_ito_colour():
    colours = [style.look(m).color for m in methods.REGISTRY]
    markers = [style.look(m).marker for m in methods.REGISTRY]
    assert len(set(colours)) == len(colours) and len(set(markers)) == len(markers)
    assert set(colours) <= set(style.OKABE_ITO.values())


@pytest.mark.parametrize("label, method", [
    ("pm", "pm"), ("PM", "pm"), ("PM k=2 concatenation", "pm"), ("PM (teacher)", "pm"),
    ("Flake", "flake"), ("flake-ablation", "flake"), ("Flake student (L_task)", "flake"),
    ("L_task + L_KD", "flake"), ("NKD", "nkd"), ("NKD student", "nkd"), ("NKD (KD from F + CE)", "nkd"),
    ("F", "srp"), ("F (resnet14)", "srp"), ("SRP (replica of F)", "srp"), ("none", "none"),
    ("no redundancy", "none"), ("hedge", "hedge"), ("equal", "equal"),
])
def test_labels_map_to_their_method(label, method):
    assert style.method_of(label) == method
    assert style.color(label, variant=0) == style.look(method).color


def test_unknown_label_is_a_clear_error():
    with pytest.raises(KeyError, match="no style for 'banana'"):
        style.method_of("banana")
    with pytest.raises(KeyError):
        style.method_of("fast")  # starts with f, but is not F


def test_same_colour_for_a_method_whatever_the_label():
    assert style.color("pm") == style.color("PM") == style.color("PM k=2 addition") == "#0072B2"
    assert style.palette(["flake", "Flake", "L_task + L_KD + L_Inter"]) == {
        "flake": "#D55E00", "Flake": "#D55E00", "L_task + L_KD + L_Inter": "#D55E00"}


def test_ablation_arms_keep_flake_hue_but_differ_from_each_other():
    arms = ["L_task", "L_task + L_KD", "L_task + L_Inter", "L_task + L_KD + L_Inter"]
    looks = [tuple(sorted(map(str, style.kwargs(a).values()))) for a in arms]
    assert len(set(looks)) == len(arms)
    assert style.kwargs(arms[-1]) == style.kwargs("flake")
    r, g, b = (int(style.color("L_task")[i:i + 2], 16) for i in (1, 3, 5))
    assert r > g and r > b  # still vermilion, lightened
    assert style.color("pm", variant=1) != style.color("pm") and style.kwargs("pm", variant=1)["linestyle"] == "--"


def test_lighten_mixes_with_white():
    assert style._lighten("#000000", 0.5) == "#808080"
    assert style._lighten("#D55E00", 0.0) == "#D55E00"


def test_order_and_labels():
    assert style.order(["flake", "L_task", "pm", "none", "srp"]) == ["none", "srp", "pm", "flake", "L_task"]
    assert [style.label(m) for m in ("none", "srp", "pm", "nkd", "flake")] == [
        "no redundancy", "SRP", "PM", "NKD", "Flake"]


def test_theme_and_integer_ticks():
    style.set_theme()
    assert matplotlib.rcParams["axes.prop_cycle"].by_key()["color"][0] == style.CYCLE[0]
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [0.1, 0.5, 0.2], **style.kwargs("flake"))
    ax.set_xlim(0.8, 3.2)
    style.integer_ticks(ax, "x")
    ticks = [t for t in ax.get_xticks() if 0.8 <= t <= 3.2]
    assert ticks and all(float(t).is_integer() for t in ticks)
    fig2, ax2 = plt.subplots()
    ax2.plot([1], [0.1], "o")  # one epoch: the axis spans 0.95..1.05
    style.integer_ticks(ax2, "x")
    fig2.canvas.draw()
    assert [t for t in ax2.get_xticks() if 0.9 <= t <= 1.1] == [1.0]
    plt.close(fig)
    plt.close(fig2)
