"""The map's traces: every test row in exactly one, found back from (trace, index) as a click reports it."""

import numpy as np
import polars as pl

from nace_app.app.review_tools import map_figure, map_traces
from nace_app.review.embedding_map import Projection

TABLE = pl.DataFrame({"text": ["<b>bakery</b>", "taxi", "software", "farm"], "true_code": ["10.71", "49.32", "62.10", "01.11"],
                      "predicted_code": ["10.71", "49.32", "62.20", "01.11"], "true_section": ["C", "H", "J", "A"],
                      "correct": [True, True, False, True]})
PROJECTION = Projection(np.arange(8, dtype=np.float32).reshape(4, 2), np.array([0.6, 0.3]))


def test_each_row_is_in_one_trace_and_a_click_finds_it_back():
    for colour_by in ("section", "right or wrong"):
        traces = map_traces(TABLE, colour_by)
        assert sorted(np.concatenate([rows for _, _, rows in traces]).tolist()) == [0, 1, 2, 3]
        figure = map_figure(PROJECTION, TABLE, colour_by)
        for curve, (_, _, rows) in enumerate(traces):
            for index, row in enumerate(rows):
                assert figure.data[curve].x[index] == PROJECTION.coordinates[row, 0]
                assert figure.data[curve].text[index].startswith(f"#{row} ")
    assert [name for name, _, _ in map_traces(TABLE, "section")] == ["A", "C", "H", "J"]


def test_hover_text_is_escaped():
    texts = [t for trace in map_figure(PROJECTION, TABLE, "section").data for t in trace.text]
    assert any("&lt;b&gt;bakery" in t for t in texts) and not any("<b>bakery" in t for t in texts)
