"""How good the short cited answer is, measured two ways (issue 13).

1. xLLM enterprise sample prompts (``prompt | reference answer``): the share of each reference
   answer's content words (stemmed, stopwords out: the measure of ``tablelm eval`` on such
   files) that the summary quotes, against the top card's snippet alone. Paired Wilcoxon
   signed-rank test over the prompts. Lengths are reported too: the summary is longer.
2. SciFact (train and test queries, judged abstracts): whether the summary's first passage
   comes from a relevant abstract, against whether the top card is relevant (P@1).

Usage::

    python benchmarks/summary_quality.py [--data ../shared/data] [--json]

Every summary citation is also checked: ``entity.text[start:end]`` must equal the quoted text.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def check_citations(model, answer) -> None:
    for p in answer.summary.passages:
        if model.entity(p.entity).text[p.start:p.end] != p.text:
            raise SystemExit(f"citation mismatch for {answer.prompt!r}: {p.entity} {p.start}-{p.end}")


def xllm_coverage(model, prompts) -> dict:
    import Stemmer
    from scipy.stats import wilcoxon

    from tablelm.evaluation import _vocabulary

    stem = Stemmer.Stemmer("english")
    rows = []
    for prompt, reference in prompts:
        a = model.ask(prompt, k=10)
        check_citations(model, a)
        want = _vocabulary(reference, stem)
        if not want:
            continue
        summary = " ".join(p.text for p in a.summary.passages)
        snippet = a.cards[0].snippet.text if a.cards and a.cards[0].snippet else ""
        rows.append({"prompt": prompt,
                     "summary": len(want & _vocabulary(summary, stem)) / len(want),
                     "snippet": len(want & _vocabulary(snippet, stem)) / len(want),
                     "summary_chars": len(summary), "snippet_chars": len(snippet),
                     "passages": len(a.summary.passages)})
    n = len(rows)
    diff = [r["summary"] - r["snippet"] for r in rows]
    p = wilcoxon(diff).pvalue if any(diff) else 1.0
    mean = lambda key: sum(r[key] for r in rows) / n
    return {"prompts": n, "summary_coverage": mean("summary"), "snippet_coverage": mean("snippet"),
            "wilcoxon_p": float(p), "summary_chars": mean("summary_chars"), "snippet_chars": mean("snippet_chars"),
            "passages": mean("passages"), "better": sum(d > 0 for d in diff), "worse": sum(d < 0 for d in diff)}


def scifact_first_sentence(model, queries, qrels) -> dict:
    from scipy.stats import wilcoxon

    rows = []
    for qid, text in queries.items():
        if qid not in qrels:
            continue
        a = model.ask(text, k=10)
        check_citations(model, a)
        rel = {d for d, g in qrels[qid].items() if g > 0}
        first = a.summary.passages[0].entity if a.summary.passages else None
        top = a.cards[0].id if a.cards else None
        rows.append((first in rel, top in rel, a.summary.passages[0].rank if a.summary.passages else None))
    n = len(rows)
    diff = [int(x) - int(y) for x, y, _ in rows]
    p = wilcoxon(diff).pvalue if any(diff) else 1.0
    return {"queries": n, "first_passage_relevant": sum(x for x, _, _ in rows) / n,
            "top_card_relevant": sum(y for _, y, _ in rows) / n, "wilcoxon_p": float(p),
            "first_passage_from_card_1": sum(r == 1 for _, _, r in rows) / n}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE.parent))
    import tablelm
    from tablelm import evaluation as E
    from tablelm import params as P

    params = P.resolve(P.parse_assignments(args.param), stage=("query", "render"), base={})
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        xllm = tablelm.build([args.data / "xllm-enterprise" / "repository3.txt"], Path(tmp) / "xllm")
        xllm.set_profile({"name": "bench", "params": params})
        out["xllm"] = xllm_coverage(xllm, E.read_prompts(args.data / "xllm-enterprise" / "sample_prompts.txt"))
        sci = tablelm.build([args.data / "scifact" / "corpus.jsonl"], Path(tmp) / "scifact")
        sci.set_profile({"name": "bench", "params": params})
        queries = E.read_queries(args.data / "scifact" / "queries.jsonl")
        for split in ("train", "test"):
            out[f"scifact_{split}"] = scifact_first_sentence(
                sci, queries, E.read_qrels(args.data / "scifact" / "qrels" / f"{split}.tsv"))
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    x = out["xllm"]
    print(f"xLLM sample prompts ({x['prompts']}): reference answers covered by the summary {x['summary_coverage']:.3f} "
          f"vs the top card's snippet {x['snippet_coverage']:.3f} (better {x['better']}, worse {x['worse']}, "
          f"Wilcoxon p={x['wilcoxon_p']:.2g}); mean {x['passages']:.1f} passages, {x['summary_chars']:.0f} chars "
          f"vs {x['snippet_chars']:.0f}")
    for split in ("train", "test"):
        s = out[f"scifact_{split}"]
        print(f"SciFact {split} ({s['queries']} queries): first summary passage from a relevant abstract "
              f"{s['first_passage_relevant']:.3f} vs top card relevant {s['top_card_relevant']:.3f} "
              f"(Wilcoxon p={s['wilcoxon_p']:.2g}); first passage from card 1: {s['first_passage_from_card_1']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
