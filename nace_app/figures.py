"""Plotly figures; the pages only place them."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import polars as pl

DIVERGING = [[0.0, "#b2182b"], [0.5, "#f7f7f7"], [1.0, "#2166ac"]]


def _layout(figure: go.Figure, title: str, height: int = 320) -> go.Figure:
    figure.update_layout(title=title, height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                         template="plotly_white")
    return figure


def word_weights(words: dict[int, str], weights: np.ndarray, title: str) -> go.Figure:
    labels = [f"{words.get(i, '?')} ({i})" for i in range(len(weights))]
    figure = go.Figure(go.Bar(x=labels, y=weights, marker_color="#1f4e79",
                              hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    return _layout(figure, title)


def char_weights(text: str, weights: np.ndarray, title: str) -> go.Figure:
    figure = go.Figure(go.Heatmap(z=[weights], x=list(range(len(text))), text=[list(text)],
                                  texttemplate="%{text}", colorscale="Blues", showscale=False,
                                  hovertemplate="'%{text}': %{z:.4f}<extra></extra>"))
    figure.update_yaxes(visible=False)
    figure.update_xaxes(visible=False)
    return _layout(figure, title, height=160)


def signed_bars(labels: list[str], values: list[float], title: str, value_name: str) -> go.Figure:
    colours = ["#2166ac" if v >= 0 else "#b2182b" for v in values]
    figure = go.Figure(go.Bar(x=labels, y=values, marker_color=colours,
                              hovertemplate="%{x}: %{y:+.4f}<extra></extra>"))
    figure.update_yaxes(title=value_name)
    return _layout(figure, title)


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


def confidence_histogram(confidence: np.ndarray, correct: np.ndarray) -> go.Figure:
    figure = go.Figure()
    figure.add_trace(go.Histogram(x=confidence[correct], name="correct", marker_color="#2166ac", opacity=0.75,
                                  xbins={"start": 0, "end": 1, "size": 0.05}))
    figure.add_trace(go.Histogram(x=confidence[~correct], name="incorrect", marker_color="#b2182b", opacity=0.75,
                                  xbins={"start": 0, "end": 1, "size": 0.05}))
    figure.update_layout(barmode="overlay")
    figure.update_xaxes(title="top-1 probability")
    figure.update_yaxes(title="test rows")
    return _layout(figure, "Top-1 probability, correct vs incorrect", height=360)


def confusion_heatmap(labels: list[str], matrix: np.ndarray, level: str) -> go.Figure:
    figure = go.Figure(go.Heatmap(z=matrix, x=labels, y=labels, colorscale="Blues",
                                  hovertemplate="true %{y} → predicted %{x}: %{z}<extra></extra>"))
    figure.update_xaxes(title=f"predicted {level}", type="category")
    figure.update_yaxes(title=f"true {level}", type="category", autorange="reversed")
    return _layout(figure, f"Confusion matrix by {level}", height=560)


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
    loss.update_xaxes(title="epoch")
    accuracy = go.Figure()
    if epochs:
        x = [e["epoch"] for e in epochs]
        for key, name, colour in (("train_accuracy", "train accuracy", "#2166ac"), ("val_accuracy",
                                                                                    "validation accuracy", "#d6604d")):
            accuracy.add_trace(go.Scatter(x=x, y=[e.get(key) for e in epochs], mode="lines+markers", name=name,
                                          line={"color": colour}))
    accuracy.update_xaxes(title="epoch")
    accuracy.update_yaxes(tickformat=".0%")
    return _layout(loss, "Loss"), _layout(accuracy, "Accuracy")
