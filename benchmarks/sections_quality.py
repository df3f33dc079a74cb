"""Do the answer's sections point where the answer is? (issue 13, "sections that help").

On the everyday Python questions (benchmarks/everyday_python.txt, with their expected answers),
per question:

* ``cat@3``: one of the first three rows of the *categories* section is the category path of an
  expected answer (an entity the question's alternatives name, as ``everyday.py`` matches them);
* ``related``: a row of the *related* section is an expected answer;
* ``related page``: the share of the related rows on the HTML page of an expected answer.

Reported per group (A: where a rule is chosen, B: where it is checked, held-out: never used to
choose; see ``everyday.py``). ``--json FILE`` saves the per-question values; ``--compare FILE``
(such a file from another version or setting) adds, per group, the paired randomization test of
``cat@3 + related`` (tablelm.evaluation.paired_test: wins/ties/losses and p).

Usage::

    python benchmarks/sections_quality.py [-m MODEL] [-p name=value ...] [--json OUT] [--compare BEFORE]

Without ``-m`` it uses the built-in model. The follow-up prompts section has no expected answers
to check against: ``--show N`` prints the first N questions' rows to read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measure(model, questions, groups, **params) -> list[dict]:
    import everyday

    ids = [model.tables.ids[i] for i in range(model.n_docs)]
    out = []
    for (prompt, alts), group in zip(questions, groups):
        expected = [i for i, cid in enumerate(ids) if everyday.hits(cid, alts)]
        categories = {" > ".join(model.entity_at(i).category) for i in expected}
        pages = {ids[i].split("#")[0] for i in expected}
        sections = model.ask(prompt, k=10, **params).sections
        cats = [r["label"] for r in sections.get("categories", [])]
        related = [r["label"] for r in sections.get("related", [])]
        out.append({
            "prompt": prompt, "group": group,
            "cat@3": float(any(c in categories for c in cats[:3])),
            "related": float(any(everyday.hits(r, alts) for r in related)),
            "related page": sum(r.split("#")[0] in pages for r in related) / max(len(related), 1),
            "rows": {name: [r.get("label", r.get("multitoken")) for r in rows] for name, rows in sections.items()},
        })
    return out


MEASURES = ("cat@3", "related", "related page")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", help="Model directory (default: the built-in model).")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--json", type=Path, help="Save the per-question values here.")
    ap.add_argument("--compare", type=Path, help="Per-question values of another run (--json).")
    ap.add_argument("--show", type=int, default=0, help="Print the rows of the first N questions.")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE))
    import everyday

    from tablelm import params as P
    from tablelm.builtin import builtin_model
    from tablelm.evaluation import paired_test
    from tablelm.model import load

    model = load(args.model) if args.model else builtin_model(progress=True)
    params = P.resolve(P.parse_assignments(args.param), stage=("query", "render"), base={})
    questions = everyday.read_questions(everyday.DEFAULT_FILE)
    rows = measure(model, questions, everyday.question_groups(everyday.DEFAULT_FILE), **params)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    before = json.loads(args.compare.read_text(encoding="utf-8")) if args.compare else None
    if before is not None and [r["prompt"] for r in before] != [r["prompt"] for r in rows]:
        raise SystemExit(f"{args.compare}: not the same questions in the same order")
    for group in ("A", "B", "held-out", "all"):
        pick = [j for j, r in enumerate(rows) if group in ("all", r["group"])]
        line = f"{group:<9}{len(pick):>3} questions: " + ", ".join(
            f"{m} {sum(rows[j][m] for j in pick) / len(pick):.2f}" for m in MEASURES)
        if before is not None:
            a = [rows[j]["cat@3"] + rows[j]["related"] for j in pick]
            b = [before[j]["cat@3"] + before[j]["related"] for j in pick]
            t = paired_test(a, b)
            line += ("  | before: " + ", ".join(f"{m} {sum(before[j][m] for j in pick) / len(pick):.2f}"
                                                 for m in MEASURES)
                     + f"  | cat@3+related W/T/L {t['wins']}/{t['ties']}/{t['losses']}, p {t['p_randomization']:.3f}")
        print(line)
    for r in rows[:args.show]:
        print(f"\n{r['prompt']}")
        for name, labels in r["rows"].items():
            print(f"  {name:<11} {', '.join(labels[:5])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
