"""Figures that must stay readable at 800 px: long texts wrap, many words switch to horizontal bars."""

import subprocess
import sys

import numpy as np

from nace_app.app import figures

LONG = " ".join(f"word{i}" for i in range(60))


def test_a_short_text_has_upright_bars_labelled_with_its_words():
    words = "I sell croissants".split()
    figure = figures.signed_bars(words, [0.1, -0.2, 0.5], "Word attributions", "attribution")
    assert figure.data[0].orientation != "h" and list(figure.layout.xaxis.ticktext) == words


def test_sixty_words_get_one_horizontal_bar_each_in_text_order_tall_enough_to_read():
    words = LONG.split()
    figure = figures.signed_bars(words, list(np.linspace(-1, 1, 60)), "Word attributions", "attribution")
    assert figure.data[0].orientation == "h" and list(figure.layout.yaxis.ticktext) == words
    assert figure.layout.yaxis.autorange == "reversed" and figure.layout.height >= 18 * 60


def test_the_character_view_wraps_a_long_text_between_words_and_shows_its_colour_scale():
    weights = np.linspace(0, 1, len(LONG))
    heatmap = figures.char_weights(LONG, weights, "Characters").data[0]
    spans = figures.line_spans(LONG)
    assert np.asarray(heatmap.z).shape == (len(spans), figures.CHARS_PER_LINE)
    assert "".join("".join(row) for row in heatmap.text) == LONG
    assert all(LONG[end - 1] == " " for _, end in spans[:-1])  # no word cut at a line's end
    assert np.nanmax(heatmap.z) == 1 and heatmap.z[-1][len(LONG) - spans[-1][0] - 1] == 1  # weights stay on their chars
    assert heatmap.showscale is not False and heatmap.colorbar.title.text == "share"


def test_a_word_longer_than_a_line_is_cut_and_an_empty_text_has_one_empty_line():
    assert figures.line_spans("x" * 90) == [(0, 40), (40, 80), (80, 90)]
    assert figures.line_spans("") == [(0, 0)]


def test_figures_are_drawn_on_plotly_white_as_the_page_shows_them():
    import json

    import plotly.io
    import plotly.tools

    loss, accuracy = figures.training_curves([(1, 2.0), (2, 1.5)], [{"epoch": 1, "val_loss": 1.7, "val_accuracy": 0.3}], 2)
    for figure in (loss, accuracy):
        shown = json.loads(plotly.io.to_json(plotly.tools.return_figure_from_figure_or_data(figure, True)))
        assert shown["layout"]["template"]["layout"]["plot_bgcolor"] == "white"  # plotly_white's, not plotly's
        assert shown["layout"]["title"]["text"] in ("Loss", "Accuracy")


def test_pandas_is_whole_once_the_figures_are_importable_so_no_figure_meets_it_half_imported():
    """plotly reads pandas from sys.modules without importing it; a warm-up thread importing pandas made a Train
    page figure fail ("partially initialized module 'pandas'"). Checked in a fresh interpreter."""
    script = "import sys\nimport nace_app.app.figures\nprint(hasattr(sys.modules.get('pandas'), 'Series'))"
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "True"
