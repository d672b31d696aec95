"""What one Train page window costs the server each second while a run goes: its fragment redraws the two curves.

Usage: uv run python benchmarks/bench_train_poll.py [--polls 200]

Times, in this process, the two figures of a run of 100 steps and 5 epochs (`figures.training_curves`) and what
`st.plotly_chart` then does with each (plotly's figure check and its JSON), as CPU milliseconds per poll. With
thirty windows polling once a second, thirty times this is the share of a core that watching runs costs.
"""

from __future__ import annotations

import argparse
import time

import plotly.io
import plotly.tools

from nace_app.app import figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--polls", type=int, default=200)
    args = parser.parse_args()
    steps = [(step, 6.0 - 0.04 * step) for step in range(1, 101)]
    epochs = [{"epoch": e, "train_loss_epoch": 5.0 - e, "val_loss": 5.2 - e, "val_accuracy": 0.1 * e} for e in range(1, 6)]

    def poll() -> None:
        for figure in figures.training_curves(steps, epochs, 20):
            plotly.io.to_json(plotly.tools.return_figure_from_figure_or_data(figure, validate_figure=True),
                              validate=False)

    poll()  # plotly's first use loads its templates and validators
    started = time.process_time()
    for _ in range(args.polls):
        poll()
    print(f"one poll of a Train page window (two figures built and serialized): "
          f"{(time.process_time() - started) / args.polls * 1000:.1f} CPU-ms")


if __name__ == "__main__":
    main()
