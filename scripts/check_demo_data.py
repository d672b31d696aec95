"""Check demo-data CSV files against the NACE Rev 2.1 nomenclature.

Usage: python scripts/check_demo_data.py [--min 15] [FILE ...]   (default: every file in nace_app/resources/demo_data)
Each file is named after one NACE division (e.g. C10.csv) and has the columns code,label.
"""
import argparse
import csv
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STRUCTURE = ROOT / "nace_app" / "resources" / "nace_rev2.1_structure.csv"
DATA_DIR = ROOT / "nace_app" / "resources" / "demo_data"


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--min", type=int, default=15)
    args = parser.parse_args()
    rows = list(csv.DictReader(STRUCTURE.open(encoding="utf-8")))
    headings = {r["code"]: r["heading"] for r in rows}
    section_of = {r["code"]: r["section"] for r in rows}
    classes = {r["code"] for r in rows if r["level"] == "4"}
    files = args.files or sorted(DATA_DIR.glob("*.csv"))
    all_files = sorted(DATA_DIR.glob("*.csv"))
    problems: list[str] = []
    counts: Counter[str] = Counter()
    seen: dict[str, str] = {}
    per_class: dict[str, list[str]] = defaultdict(list)
    for path in all_files:
        checking = path.resolve() in {f.resolve() for f in files}
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames != ["code", "label"]:
                problems.append(f"{path.name}: header must be exactly code,label (got {reader.fieldnames})")
                continue
            division = path.stem[1:]
            for line_no, row in enumerate(reader, start=2):
                code, label = (row["code"] or "").strip(), (row["label"] or "").strip()
                where = f"{path.name}:{line_no}"
                if code not in classes:
                    problems.append(f"{where}: {code!r} is not a NACE Rev 2.1 class (level 4)")
                    continue
                if not code.startswith(division) or path.stem[0] != section_of[code]:
                    problems.append(f"{where}: {code} does not belong in {path.name}")
                if len(label) < 3:
                    problems.append(f"{where}: label too short")
                    continue
                key = normalise(label)
                if key in seen and checking:
                    problems.append(f"{where}: duplicate label (also {seen[key]}): {label!r}")
                seen.setdefault(key, where)
                counts[code] += 1
                per_class[code].append(label)
    checked_codes = {c for path in files for c in classes if c.startswith(path.stem[1:]) and section_of[c] == path.stem[0]}
    for code in sorted(checked_codes):
        if counts[code] < args.min:
            problems.append(f"{code} ({headings[code]}): {counts[code]} rows, need >= {args.min}")
        verbatim = sum(normalise(label) == normalise(headings[code]) for label in per_class[code])
        if verbatim > 1:
            problems.append(f"{code}: the official heading is copied verbatim {verbatim} times (max 1)")
        labels = [set(normalise(label).split()) for label in per_class[code]]
        for i in range(len(labels)):
            for j in range(i + 1, len(labels)):
                a, b = labels[i], labels[j]
                if len(a) >= 4 and len(a ^ b) <= 2 and len(a & b) / len(a | b) > 0.7:
                    problems.append(f"{code}: near-template pair: {per_class[code][i]!r} ~ {per_class[code][j]!r}")
    for p in problems:
        print(p)
    total = sum(counts[c] for c in checked_codes)
    print(f"{len(checked_codes)} classes checked, {total} rows, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
