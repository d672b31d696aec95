"""Check the demo-data CSV files against the NACE Rev 2.1 nomenclature.

Usage: python scripts/check_demo_data.py [--min 60] [--min-share 0.08] [FILE ...]
(default: every file in nace_app/resources/demo_data). Each file is named after one NACE division (C10.csv, and
C10-2.csv for the second wave of writers, who never saw the first) and has the columns code,register,label.
Checked: valid class codes in the right file, coverage per class, exact duplicates anywhere, near-duplicates (the
same words in another order) across classes, near-templates within a class and register (one sentence with a word
or two changed), the official heading copied more than once, and the share of each register per class.
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
REGISTERS = ("query", "index", "definition", "owner", "informal")  # each must have its share in every class
LEGACY = ("phrase",)  # noun phrases of the first demo data
STOPWORDS = {"a", "an", "the", "of", "and", "for", "in", "on", "to", "we", "i", "our", "my", "with", "from", "by"}


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


def word_set(text: str) -> frozenset[str]:
    return frozenset(w for w in normalise(text).split() if w not in STOPWORDS)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--min", type=int, default=60, help="rows per class")
    parser.add_argument("--min-share", type=float, default=0.08, help="share of each register per class")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="folder of division files to check")
    args = parser.parse_args()
    rows = list(csv.DictReader(STRUCTURE.open(encoding="utf-8")))
    headings = {r["code"]: r["heading"] for r in rows}
    section_of = {r["code"]: r["section"] for r in rows}
    classes = {r["code"] for r in rows if r["level"] == "4"}
    checked_files = {f.resolve() for f in (args.files or args.data_dir.glob("*.csv"))}
    problems: list[str] = []
    seen: dict[str, str] = {}
    by_words: dict[frozenset[str], tuple[str, str]] = {}
    per_class: dict[str, list[str]] = defaultdict(list)
    registers: dict[str, Counter[str]] = defaultdict(Counter)
    class_registers: dict[str, list[str]] = defaultdict(list)
    for path in sorted(args.data_dir.glob("*.csv"), key=lambda p: (p.stem[:3], p.stem)):  # each first wave first
        checking = path.resolve() in checked_files
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames != ["code", "register", "label"]:
                problems.append(f"{path.name}: header must be exactly code,register,label (got {reader.fieldnames})")
                continue
            division = path.stem[1:3]
            for line_no, row in enumerate(reader, start=2):
                code, register, label = (row[k].strip() for k in ("code", "register", "label"))
                where = f"{path.name}:{line_no}"
                if code not in classes:
                    problems.append(f"{where}: {code!r} is not a NACE Rev 2.1 class (level 4)")
                    continue
                if not code.startswith(division) or path.stem[0] != section_of[code]:
                    problems.append(f"{where}: {code} does not belong in {path.name}")
                if register not in REGISTERS + LEGACY:
                    problems.append(f"{where}: unknown register {register!r}")
                if len(label) < 3:
                    problems.append(f"{where}: label too short")
                    continue
                key = normalise(label)
                if key in seen and checking:
                    problems.append(f"{where}: duplicate label (also {seen[key]}): {label!r}")
                seen.setdefault(key, where)
                words = word_set(label)
                other = by_words.get(words)
                if checking and len(words) >= 3 and other is not None and other[0] != code:
                    problems.append(f"{where}: same words as {other[1]} of another class ({other[0]}): {label!r}")
                by_words.setdefault(words, (code, where))
                per_class[code].append(label)
                class_registers[code].append(register)
                registers[code][register] += 1
    checked_codes = {c for path in checked_files for c in classes
                     if c.startswith(path.stem[1:3]) and section_of[c] == path.stem[0]}
    for code in sorted(checked_codes):
        labels = per_class[code]
        if len(labels) < args.min:
            problems.append(f"{code} ({headings[code]}): {len(labels)} rows, need >= {args.min}")
        for register in REGISTERS:
            if registers[code][register] < args.min_share * max(len(labels), 1):
                problems.append(f"{code}: {registers[code][register]} {register} rows of {len(labels)} "
                                f"(below {args.min_share:.0%})")
        verbatim = sum(normalise(label) == normalise(headings[code]) for label in labels)
        if verbatim > 1:
            problems.append(f"{code}: the official heading is copied verbatim {verbatim} times (max 1)")
        sets = [set(normalise(label).split()) for label in labels]
        kinds = class_registers[code]
        for i in range(len(sets)):
            for j in range(i + 1, len(sets)):
                if kinds[i] != kinds[j]:  # one activity said in two registers is the point, not a template
                    continue
                a, b = sets[i], sets[j]
                if len(a) >= 4 and len(a ^ b) <= 2 and len(a & b) / len(a | b) > 0.7:
                    problems.append(f"{code}: near-template pair: {labels[i]!r} ~ {labels[j]!r}")
    for p in problems:
        print(p)
    total = sum(len(per_class[c]) for c in checked_codes)
    shares = Counter()
    for c in checked_codes:
        shares.update(registers[c])
    summary = ", ".join(f"{r} {shares[r] / max(total, 1):.0%}" for r in REGISTERS + LEGACY)
    print(f"{len(checked_codes)} classes checked, {total} rows ({summary}), {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
