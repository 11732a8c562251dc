import sys
import types

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from unlearnlib import notebook, plotting  # noqa: E402


def test_style_has_white_backgrounds_and_the_palette():
    plotting.use_style()
    assert matplotlib.rcParams["figure.facecolor"] == "white"
    assert matplotlib.rcParams["savefig.facecolor"] == "white"
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    assert colors == list(plotting.PALETTE)
    assert plotting.role_color("retrain") != plotting.role_color("original")


def test_diagram_draws_boxes_and_arrows():
    fig = plotting.draw_diagram({"a": (0.2, 0.5, "A"), "b": (0.8, 0.5, "B", "retrain")},
                                [("a", "b", "edge")])
    ax = fig.axes[0]
    assert {t.get_text() for t in ax.texts} >= {"A", "B", "edge"}
    assert len(ax.patches) + len([c for c in ax.get_children() if type(c).__name__ == "Annotation"]) >= 1
    plt.close(fig)


def test_loss_histograms_accept_zero_losses():
    fig, ax = plt.subplots()
    plotting.plot_loss_histograms(ax, {"train": np.zeros(10), "test": np.linspace(0, 3, 10)})
    assert ax.get_xscale() == "log"
    plt.close(fig)


def test_glue_converts_numpy_and_tensor_scalars(monkeypatch):
    recorded = {}
    fake = types.ModuleType("myst_nb")
    fake.glue = lambda name, value, display=False: recorded.__setitem__(name, value)
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    notebook.glue("a", np.float32(0.25))
    notebook.glue("b", torch.tensor(3))
    notebook.glue("c", "text")
    assert recorded == {"a": 0.25, "b": 3, "c": "text"}
    assert type(recorded["a"]) is float and type(recorded["b"]) is int


def test_setup_checks_the_library_version():
    with pytest.raises(RuntimeError, match="written for unlearnlib 9.9"):
        notebook.setup_notebook(0, requires="9.9")
    assert notebook.setup_notebook(0, device="cpu") == torch.device("cpu")
