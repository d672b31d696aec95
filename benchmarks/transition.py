"""The NACE Rev 2 -> Rev 2.1 transition, measured on the demo's held-out test rows (issue 21).

1. Relabelling: the test split's rows whose Rev 2.1 class links to exactly one Rev 2 class get that Rev 2 code; the rows whose
   Rev 2 class links to several Rev 2.1 classes are kept, and the model must find the known Rev 2.1 code among the
   classes the table allows (`relabel_accuracy`): restricted top-1 next to the unrestricted one.
2. The follow-up question: on the held-out rows of the prediction sets' calibration plan whose set holds 2+ codes,
   a simulated respondent answers truthfully (`simulate_respondent`): share asked, set size and top-1 before and
   after, and the share where no option holds the true code.

Usage: uv run python benchmarks/transition.py [--model URI] [--coverage 0.9] [--rows N] [--json]
"""

import argparse
import json

from nace_app.coding.follow_up import simulate_respondent
from nace_app.coding.relabel import relabel_accuracy
from nace_app.model.opening import open_data, open_model
from nace_app.review.calibration import calibration_of, runtime_calibration
from nace_app.settings.config import load_settings
from nace_app.settings.logs import configure_logging


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--data", default="embedded")
    parser.add_argument("--coverage", type=float, default=0.9)
    parser.add_argument("--rows", type=int, help="only the first N held-out rows (a smoke test)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    configure_logging()
    settings = load_settings().with_overrides(model_uri=args.model, data_uri=args.data)
    classifier = open_model(None, settings, calibrate=runtime_calibration(settings.cache_dir)).classifier
    data = open_data(settings)
    scores: dict[str, object] = {}

    def split_scores(split: str):
        if split not in scores:
            scores[split] = classifier.predict_proba(getattr(data.splits, split)["label"].to_list())
        return scores[split]

    test = data.splits.test[:args.rows] if args.rows else data.splits.test
    held_out = split_scores("test")[:test.height]  # the sets are calibrated on shifted text: every test row is held out
    true_codes = test["code"].to_list()
    relabelling = relabel_accuracy(held_out, true_codes, classifier.labels)

    fitted = calibration_of(classifier)
    calibrator = fitted.calibrator(args.coverage)
    sets = calibrator.sets(held_out)
    labels = classifier.labels
    follow_up = simulate_respondent(classifier.nomenclature, [[labels[i] for i in s] for s in sets],
                                    [held_out[r, s].tolist() for r, s in enumerate(sets)], true_codes)
    result = {"model": args.model, "rows": len(true_codes), "split": "test", "note": f"calibrated on {fitted.fitted_on}",
              "coverage": args.coverage, "relabelling": relabelling.to_dict(), "follow_up": follow_up.to_dict()}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"model {args.model} · {test.height:,} test rows")
    r = relabelling
    print(f"relabelling: {r.rows:,} rows whose Rev 2 code links to several Rev 2.1 classes "
          f"({r.mean_candidates:.1f} allowed on average; {r.table_rows:,} more are settled by the table alone, "
          f"{r.excluded_rows:,} have no single Rev 2 code)")
    print(f"  restricted top-1 {r.restricted_accuracy:.4f}  unrestricted top-1 {r.unrestricted_accuracy:.4f}")
    f = follow_up
    print(f"{len(true_codes):,} held-out test rows for the question · {result['note']}")
    print(f"follow-up question at {args.coverage:.0%}: asked on {f.asked_share:.1%} of rows; mean set size "
          f"{f.mean_set_size_before:.2f} -> {f.mean_set_size_after:.2f}; top-1 {f.top1_before:.4f} -> "
          f"{f.top1_after:.4f}; no option holds the true code {f.misled_share:.1%} (no option fits {f.unanswered_share:.1%})")


if __name__ == "__main__":
    main()
