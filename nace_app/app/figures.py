"""Plotly figures; the pages only place them."""

from __future__ import annotations

import numpy as np
import pandas  # noqa: F401  # see the note below
import plotly.graph_objects as go
import plotly.io as pio
import polars as pl

# plotly reads pandas from sys.modules without importing it (to accept a Series): a figure built while another
# thread was still importing pandas (the start-up's warm-up) met the half-made module and failed with "partially
# initialized module 'pandas' has no attribute 'Series'". Imported with this module, pandas is whole before any figure.
TOWARD, AWAY = "#2166ac", "#b35806"  # blue and orange: told apart by colour-blind readers too
# Every figure of the app is drawn on plotly_white. As plotly's default, it is copied once per figure, when the
# figure is made; set figure by figure, it was copied a second time, 25 ms a figure (the Train page redraws two
# every second in every window while a run goes).
pio.templates.default = "plotly_white"


def _layout(figure: go.Figure, title: str, height: int = 320) -> go.Figure:
    figure.update_layout(title=title, height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure


CHARS_PER_LINE = 40  # readable in the Predict page's right column at 800 px
MOST_UPRIGHT_BARS = 12  # more words than this: one horizontal bar a word, labels never overlap


def line_spans(text: str, width: int = CHARS_PER_LINE) -> list[tuple[int, int]]:
    """(start, end) of each line of `text` wrapped at `width` characters, after a space where one is."""
    spans, start = [], 0
    while start < len(text):
        end = min(start + width, len(text))
        space = text.rfind(" ", start, end)
        if end < len(text) and space > start:
            end = space + 1
        spans.append((start, end))
        start = end
    return spans or [(0, 0)]


def char_weights(text: str, weights: np.ndarray, title: str) -> go.Figure:
    """The text wrapped in lines, each character shaded by its weight, with the colour scale."""
    spans = line_spans(text)
    z = np.full((len(spans), CHARS_PER_LINE), np.nan)
    chars = np.full((len(spans), CHARS_PER_LINE), "", dtype=object)
    for line, (start, end) in enumerate(spans):
        z[line, : end - start] = weights[start:end]
        chars[line, : end - start] = list(text[start:end])
    figure = go.Figure(go.Heatmap(z=z, text=chars, texttemplate="%{text}", colorscale="Blues", zmin=0,
                                  hoverongaps=False, colorbar={"title": {"text": "share", "side": "right"},
                                                               "thickness": 10, "tickformat": ".3%", "nticks": 4},
                                  hovertemplate="'%{text}': %{z:.2%}<extra></extra>"))
    figure.update_yaxes(visible=False, autorange="reversed")
    figure.update_xaxes(visible=False)
    return _layout(figure, title, height=70 + 26 * len(spans))


def signed_bars(labels: list[str], values: list[float], title: str, value_name: str,
                marks: list[str] | None = None) -> go.Figure:
    """One bar per word, in text order (a repeated word keeps its place); sign by colour and by pattern.

    Upright bars for a short text; for a long one, horizontal bars read top to bottom, whose labels never overlap.
    `marks`: a short text at the end of each bar ("" for none), e.g. the flag of a word the methods disagree on.
    """
    colours = [TOWARD if v >= 0 else AWAY for v in values]
    patterns = ["" if v >= 0 else "/" for v in values]
    positions = list(range(len(labels)))
    horizontal = len(labels) > MOST_UPRIGHT_BARS
    bars = {"y": positions, "x": values, "orientation": "h"} if horizontal else {"x": positions, "y": values}
    hover = "%{customdata}: %{x:+.4f}" if horizontal else "%{customdata}: %{y:+.4f}"
    figure = go.Figure(go.Bar(**bars, marker={"color": colours, "pattern": {"shape": patterns}}, customdata=labels,
                              hovertemplate=f"{hover}<extra></extra>", text=marks, textposition="outside",
                              cliponaxis=False))
    positions_axis, values_axis = (figure.update_yaxes, figure.update_xaxes) if horizontal else (
        figure.update_xaxes, figure.update_yaxes)
    positions_axis(tickmode="array", tickvals=positions, ticktext=labels, automargin=True)
    values_axis(title=value_name)
    if horizontal:
        figure.update_yaxes(autorange="reversed")
    return _layout(figure, title, height=max(320, 80 + 18 * len(labels)) if horizontal else 320)


def automation_curve(curve: pl.DataFrame, chosen: dict[str, float]) -> go.Figure:
    figure = go.Figure(go.Scatter(x=curve["automated_share"], y=curve["automated_accuracy"], mode="lines",
                                  customdata=curve["threshold"], name="threshold sweep",
                                  hovertemplate="threshold %{customdata:.2f}<br>automated %{x:.1%}"
                                                "<br>accuracy %{y:.1%}<extra></extra>"))
    figure.add_trace(go.Scatter(x=[chosen["automated_share"]], y=[chosen["automated_accuracy"]], mode="markers",
                                marker={"size": 14, "color": "#d6604d", "symbol": "diamond"},
                                name=f"threshold {chosen['threshold']:.2f}"))
    figure.update_xaxes(title="share coded automatically", tickformat=".0%", range=[0, 1.02])
    figure.update_yaxes(title="accuracy of automatic codes", tickformat=".0%")
    return _layout(figure, "Accuracy against automation rate", height=360)


def reliability(table: pl.DataFrame) -> go.Figure:
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#999"},
                                name="perfect calibration"))
    figure.add_trace(go.Scatter(x=table["mean_confidence"], y=table["accuracy"], mode="lines+markers",
                                marker={"size": np.clip(np.sqrt(table["count"].to_numpy()) * 2, 6, 30)},
                                customdata=table["count"], name="model",
                                hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.2f}<br>%{customdata} rows"
                                              "<extra></extra>"))
    figure.update_xaxes(title="mean top-1 probability", range=[0, 1])
    figure.update_yaxes(title="accuracy", range=[0, 1])
    return _layout(figure, "Reliability diagram", height=360)


def confidence_histogram(score: np.ndarray, correct: np.ndarray, threshold: float, score_name: str) -> go.Figure:
    """Correct and incorrect rows side by side per bin (neither hides the other), the threshold as a line."""
    figure = go.Figure()
    for rows, name, colour in ((correct, "correct", TOWARD), (~correct, "incorrect", AWAY)):
        figure.add_trace(go.Histogram(x=score[rows], name=name, marker_color=colour,
                                      xbins={"start": 0, "end": 1.0001, "size": 0.05}))
    figure.add_vline(x=threshold, line={"dash": "dash", "color": "#333"},
                     annotation_text=f"threshold {threshold:.2f}", annotation_position="top")
    figure.update_layout(barmode="group", legend={"orientation": "h", "y": -0.25})
    figure.update_xaxes(title=score_name, range=[0, 1])
    figure.update_yaxes(title="test rows")
    return _layout(figure, f"{score_name.capitalize()}: correct and incorrect", height=380)


def confusion_cells(labels: list[str], matrix: np.ndarray, level: str) -> go.Figure:
    """The off-diagonal cells as clickable squares (a heatmap trace cannot be selected), on a log colour scale.

    The diagonal (correct codes) is left out so that confusions stay visible; at division level only every
    few tick labels are printed.
    """
    true_index, predicted_index = np.nonzero(matrix)
    off = true_index != predicted_index
    true_index, predicted_index = true_index[off], predicted_index[off]
    counts = matrix[true_index, predicted_index]
    x = [labels[i] for i in predicted_index]
    y = [labels[i] for i in true_index]
    size = max(4, min(22, int(520 / max(len(labels), 1))))
    figure = go.Figure(go.Scatter(
        x=x, y=y, mode="markers", customdata=counts,
        marker={"symbol": "square", "size": size, "color": np.log10(counts), "colorscale": "Blues", "cmin": 0,
                "colorbar": {"title": "rows", "tickvals": [0, 1, 2, 3], "ticktext": ["1", "10", "100", "1000"]},
                "line": {"width": 0}},
        hovertemplate="true %{y} → predicted %{x}: %{customdata} rows<extra></extra>"))
    step = max(1, len(labels) // 30)
    ticks = labels[::step]
    figure.update_xaxes(title=f"predicted {level}", type="category", categoryorder="array", categoryarray=labels,
                        tickmode="array", tickvals=ticks, ticktext=ticks)
    figure.update_yaxes(title=f"true {level}", type="category", categoryorder="array", categoryarray=labels[::-1],
                        tickmode="array", tickvals=ticks, ticktext=ticks)
    return _layout(figure, f"Confusions by {level} (click a square; the diagonal is left out)", height=560)


def training_curves(steps: list[tuple[int, float]], epochs: list[dict[str, float]], steps_per_epoch: int):
    """Loss (per step and per epoch) and accuracy (per epoch), x in epochs."""
    loss = go.Figure()
    if steps:
        loss.add_trace(go.Scatter(x=[s / max(steps_per_epoch, 1) for s, _ in steps], y=[v for _, v in steps],
                                  mode="lines", name="train loss (step)", line={"color": "#9ecae1"}))
    if epochs:
        x = [e["epoch"] for e in epochs]
        for key, name, colour in (("train_loss_epoch", "train loss", "#2166ac"), ("val_loss", "validation loss",
                                                                                   "#d6604d")):
            loss.add_trace(go.Scatter(x=x, y=[e.get(key) for e in epochs], mode="lines+markers", name=name,
                                      line={"color": colour}))
    loss.update_xaxes(title="epoch", rangemode="tozero")
    accuracy = go.Figure()
    if epochs:
        accuracy.add_trace(go.Scatter(x=[e["epoch"] for e in epochs], y=[e.get("val_accuracy") for e in epochs],
                                      mode="lines+markers", name="validation accuracy", line={"color": "#d6604d"}))
    accuracy.update_xaxes(title="epoch", range=[0.5, max(len(epochs), 1) + 0.5])
    accuracy.update_yaxes(tickformat=".0%", range=[0, 1])
    return _layout(loss, "Loss"), _layout(accuracy, "Accuracy")


def set_sizes(sizes: pl.DataFrame, level: float) -> go.Figure:
    """How many codes the prediction sets hold (columns size, rows): a bar per size, sizes over 20 grouped."""
    capped = sizes.with_columns(pl.when(pl.col("size") > 20).then(pl.lit("21+")).otherwise(pl.col("size").cast(pl.String))
                                .alias("label")).group_by("label", maintain_order=True).agg(pl.col("rows").sum())
    figure = go.Figure(go.Bar(x=capped["label"].to_list(), y=capped["rows"].to_list(), marker_color=TOWARD,
                              hovertemplate="%{y:,} rows with %{x} codes<extra></extra>"))
    figure.update_xaxes(title="codes in the set", type="category")
    figure.update_yaxes(title="rows")
    return _layout(figure, f"Prediction-set sizes at {level:.0%} coverage")
