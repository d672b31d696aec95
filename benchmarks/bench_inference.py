"""Benchmark: NACE Explorer's inference and explanations against torchTextClassifiers' own `predict`.

Usage: uv run python benchmarks/bench_inference.py [--texts 10500] [--explain-texts 60] [--out benchmarks/results.md]

It builds a model in the published pretrained configuration with torchTextClassifiers itself (WordPiece
vocabulary 5000, output_dim 125, embedding 96, one self-attention layer with 4 heads, 311 classes; random
weights, no download) and saves it with the library's `save()`. Then, each as a whole process measured with
`os.wait4` (wall time and peak RSS):
- the library: one `ttc.predict(X, top_k=5)` call over all texts, as the reference notebook calls it;
- ours: `nace-app predict --input texts.txt --output out.jsonl --top-k 5`;
- explanations: the library's `predict(..., top_k=5, explain_with_captum=True)` once per text (its fastest way),
  against `nace-app predict --explain --top-k 5` over the same texts.
Every figure is net of the process's own start-up and model loading: the same command on one text is timed and
subtracted. Outputs are compared (top-5 codes equal; probabilities within the library's 2-decimal rounding).
In-process latencies (what an app user feels) are reported for this model and for the embedded demo model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NUM_CLASSES = 311


def build_pretrained_like_model(folder: Path, texts: list[str]) -> Path:
    """The published configuration, built and saved by torchTextClassifiers itself."""
    import torch
    from sklearn.preprocessing import LabelEncoder
    from torchTextClassifiers import ModelConfig, torchTextClassifiers
    from torchTextClassifiers.model.components import AttentionConfig
    from torchTextClassifiers.tokenizers import WordPieceTokenizer
    from torchTextClassifiers.value_encoder import ValueEncoder

    from nace_app.nomenclature.structure import load_nomenclature

    torch.manual_seed(0)
    tokenizer = WordPieceTokenizer(vocab_size=5000, output_dim=125)
    tokenizer.train(texts)
    codes = load_nomenclature().codes("class")[:NUM_CLASSES]
    config = ModelConfig(embedding_dim=96, num_classes=NUM_CLASSES,
                         attention_config=AttentionConfig(n_layers=1, n_head=4, n_kv_head=4, sequence_len=125))
    ttc = torchTextClassifiers(tokenizer=tokenizer, model_config=config,
                               value_encoder=ValueEncoder(LabelEncoder().fit(codes)))
    with torch.no_grad():  # the library zero-initialises some projections; give every weight a real value
        for name, parameter in ttc.pytorch_model.named_parameters():
            if parameter.dim() > 1 and "embedding" not in name:
                parameter.normal_(0, 0.2)
    ttc.save(folder)  # an untrained model has no checkpoint, so its weights go beside the library's files
    torch.save(ttc.pytorch_model.state_dict(), folder / "weights.pt")
    return folder


def load_library(folder: Path):
    import torch
    from torchTextClassifiers import torchTextClassifiers

    ttc = torchTextClassifiers.load(folder, device="cpu")
    ttc.pytorch_model.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    return ttc


# --- the library's side, run as its own process ---------------------------------------------------------------


def library_predict(folder: Path, input_path: Path, output: Path, explain: bool) -> None:
    texts = input_path.read_text().splitlines()
    ttc = load_library(folder)
    if explain:  # one call per text: faster than one call for all (see the issue)
        results = [ttc.predict(np.asarray([t]), top_k=5, explain_with_captum=True) for t in texts]
        predictions = np.concatenate([r["prediction"] for r in results])
        confidence = np.concatenate([r["confidence"].numpy() for r in results])
    else:
        result = ttc.predict(np.asarray(texts), top_k=5)
        predictions, confidence = result["prediction"], result["confidence"].numpy()
    np.savez(output, prediction=np.asarray(predictions, dtype=str), confidence=confidence)


def save_own_format(folder: Path, out: Path) -> Path:
    """The same weights in NACE Explorer's format, so our process loads without unpickling."""
    from nace_app.model.formats import save_model

    ttc = load_library(folder)
    return save_model(ttc, [str(c) for c in ttc.value_encoder.label_encoder.classes_], out)


# --- measurement ----------------------------------------------------------------------------------------------


def run_measured(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"failed ({status}): {' '.join(command)}\n{process.stderr.read().decode()[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024


def in_process_latencies(model_uri: str, text: str, repeats: int = 20) -> dict[str, float]:
    from nace_app.explain.attributions import integrated_gradients
    from nace_app.model.opening import open_model
    from nace_app.settings.config import load_settings

    classifier = open_model(model_uri, load_settings()).classifier
    classifier.predict([text], top_k=5)
    codes = [c.code for c in classifier.predict([text], top_k=5)[0].candidates]
    integrated_gradients(classifier, text, codes)
    predict_times, explain_times, one_code_times, steps, gaps = [], [], [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        classifier.predict([text], top_k=5)
        predict_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        explanations = integrated_gradients(classifier, text, codes)
        explain_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        integrated_gradients(classifier, text, codes[:1])
        one_code_times.append(time.perf_counter() - started)
        steps.append(explanations[0].steps)
        gaps.append(max(e.relative_gap for e in explanations))
    return {"predict_top5_ms": 1000 * statistics.median(predict_times),
            "explain_top5_ms": 1000 * statistics.median(explain_times),
            "explain_one_code_ms": 1000 * statistics.median(one_code_times),
            "ig_steps": statistics.median(steps), "max_completeness_gap": max(gaps)}


def compare(ours_jsonl: Path, library_npz: Path) -> dict[str, float]:
    rows = [json.loads(line) for line in ours_jsonl.read_text().splitlines()]
    reference = np.load(library_npz)
    our_codes = np.array([[p["code"] for p in r["predictions"]] for r in rows])
    our_probabilities = np.array([[p["probability"] for p in r["predictions"]] for r in rows])
    return {"same_top5": float(np.mean(our_codes == reference["prediction"])),
            "max_probability_gap_vs_rounded": float(np.abs(our_probabilities - reference["confidence"]).max())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=10_500)
    parser.add_argument("--explain-texts", type=int, default=60)
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    args = parser.parse_args()

    from nace_app.data.tables import load_labelled
    from nace_app.settings.logs import configure_logging
    from nace_app.sources.resolve import embedded_data_dir

    configure_logging()
    work = Path(tempfile.mkdtemp(prefix="nace-bench-"))
    corpus = load_labelled(embedded_data_dir())["label"].to_list()
    rng = np.random.default_rng(0)
    texts = [corpus[i] for i in rng.choice(len(corpus), size=args.texts, replace=args.texts > len(corpus))]
    library_dir = build_pretrained_like_model(work / "library_model", corpus)
    own_dir = save_own_format(library_dir, work / "own_model")
    inputs = {"all": texts, "one": texts[:1], "explain": texts[: args.explain_texts]}
    for name, lines in inputs.items():
        (work / f"{name}.txt").write_text("\n".join(t.replace("\n", " ") for t in lines) + "\n")

    python = sys.executable
    me = str(Path(__file__).resolve())
    ours = [python, "-m", "nace_app", "predict", "--model", str(own_dir), "--top-k", "5"]
    figures: dict[str, tuple[float, float]] = {}
    for name in ("one", "all"):
        figures[f"library_{name}"] = run_measured([python, me, "library", str(library_dir), str(work / f"{name}.txt"),
                                                   str(work / f"library_{name}.npz")])
        figures[f"ours_{name}"] = run_measured(ours + ["--input", str(work / f"{name}.txt"), "--output",
                                                       str(work / f"ours_{name}.jsonl")])
    figures["library_explain"] = run_measured([python, me, "library-explain", str(library_dir),
                                               str(work / "explain.txt"), str(work / "library_explain.npz")])
    figures["library_explain_one"] = run_measured([python, me, "library-explain", str(library_dir),
                                                   str(work / "one.txt"), str(work / "library_explain_one.npz")])
    figures["ours_explain"] = run_measured(ours + ["--explain", "--input", str(work / "explain.txt"), "--output",
                                                   str(work / "ours_explain.jsonl")])
    figures["ours_explain_one"] = run_measured(ours + ["--explain", "--input", str(work / "one.txt"), "--output",
                                                       str(work / "ours_explain_one.jsonl")])

    def net(name: str, baseline: str) -> float:
        return max(figures[name][0] - figures[baseline][0], 1e-9)

    library_rate = args.texts / net("library_all", "library_one")
    our_rate = args.texts / net("ours_all", "ours_one")
    library_explain = net("library_explain", "library_explain_one")
    our_explain = net("ours_explain", "ours_explain_one")
    equality = compare(work / "ours_all.jsonl", work / "library_all.npz")
    explain_rows = [json.loads(line) for line in (work / "ours_explain.jsonl").read_text().splitlines()]
    completeness = max(abs(p["attribution_total"] - p["logit_delta"]) / max(abs(p["logit_delta"]), 1e-6)
                       for r in explain_rows for p in r["predictions"])
    sample = "I sell croissants, baguettes and pains au chocolat in my small bakery in the centre of Lyon every day"
    latencies = {"pretrained configuration": in_process_latencies(str(own_dir), sample),
                 "embedded demo model": in_process_latencies("embedded", sample)}

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [
        f"Machine: {machine}; {time.strftime('%Y-%m-%d')}. Model: the pretrained configuration (vocab 5000, "
        f"output_dim 125, embedding 96, 1 attention layer x 4 heads, {NUM_CLASSES} classes).",
        "",
        "| measure | torchTextClassifiers | NACE Explorer | ratio |",
        "|---|---|---|---|",
        f"| batch prediction, {args.texts:,} texts (texts/s, net of start-up) | {library_rate:,.0f} | {our_rate:,.0f} | "
        f"{our_rate / library_rate:.1f}x |",
        f"| peak memory of that process (MB) | {figures['library_all'][1]:,.0f} | {figures['ours_all'][1]:,.0f} | "
        f"{figures['library_all'][1] / figures['ours_all'][1]:.1f}x less |",
        f"| start-up + model loading, one text (s) | {figures['library_one'][0]:.1f} | {figures['ours_one'][0]:.1f} | |",
        f"| top-5 explanations of {args.explain_texts} texts (s, net) | {library_explain:.1f} | {our_explain:.1f} | "
        f"{library_explain / our_explain:.1f}x |",
        f"| identical top-5 codes | | {equality['same_top5']:.2%} | |",
        f"| largest probability gap vs the library's 2-decimal rounding | | {equality['max_probability_gap_vs_rounded']:.4f} | |",
        f"| worst completeness gap of an explanation (CLI run) | | {completeness:.3%} | |",
        "",
        "| in-process latency (median of 20) | top-5 prediction (ms) | top-5 explanations (ms) "
        "| one-code explanation (ms) | IG steps | worst completeness gap |",
        "|---|---|---|---|---|---|",
    ] + [f"| {name} | {v['predict_top5_ms']:.1f} | {v['explain_top5_ms']:.1f} | {v['explain_one_code_ms']:.1f} | "
         f"{v['ig_steps']:.0f} | {v['max_completeness_gap']:.3%} |" for name, v in latencies.items()]
    report = "\n".join(lines) + "\n"
    args.out.write_text(report)
    print(report)
    (args.out.with_suffix(".json")).write_text(json.dumps({"figures": figures, "equality": equality,
                                                           "latencies": latencies}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("library", "library-explain"):
        from nace_app.settings.logs import configure_logging

        configure_logging()
        library_predict(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), explain=sys.argv[1] == "library-explain")
    else:
        main()
