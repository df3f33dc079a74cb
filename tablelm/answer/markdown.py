"""Markdown rendering of an :class:`Answer`: the reply of the OpenAI-compatible endpoint and
of chat clients.

Only text taken from the answer (titles, snippets, ids, sources, section labels) appears, and
every piece of corpus text is escaped, so the reply says nothing that is not in the corpus and
no corpus text is interpreted as markup.
"""

from __future__ import annotations

import re

from .snippets import show

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")


def md_escape(text: str) -> str:
    """Escape Markdown and HTML-significant characters so corpus text is shown, never interpreted."""
    return _MD_SPECIAL.sub(r"\\\1", re.sub(r"\s+", " ", str(text)))


def _bold(text: str) -> str:
    return f"**{text.strip()}**"


def render_markdown(answer, max_cards: int = 5) -> str:
    """The answer as concise Markdown: the short cited answer, the ranked passages, the sources.

    The summary's passages come first, each followed by the number of the card it quotes; the
    source list gives, per card, the entity id and the character spans the summary quotes.

    Parameters
    ----------
    answer : Answer
        What :meth:`Model.ask` returned.
    max_cards : int
        Cards listed (the rest are left out).
    """
    lines = []
    matched = answer.plan.get("multitokens_matched") or []
    cards = answer.cards[:max_cards]
    summary = [p for p in (answer.summary.passages if answer.summary else []) if p.rank <= len(cards)]
    for p in summary:  # the short answer first: quoted passages, numbered by the card they come from
        lines.append(f"{md_escape(p.text).strip()} [{p.n}]")
        lines.append("")
    if not cards:
        lines.append("No passage of the corpus matches this prompt.")
        unknown = answer.plan.get("unknown") or []
        if unknown:
            lines.append("")
            lines.append("Not in the corpus: " + ", ".join(md_escape(w) for w in unknown) + ".")
    else:
        head = f"{'Sources: the top' if summary else 'Top'} {len(cards)} passages of the corpus"
        if matched:
            head += " for " + ", ".join(f"*{md_escape(m)}*" for m in matched)
        lines.append(head + ":")
        lines.append("")
        for i, c in enumerate(cards, 1):
            title = md_escape(c.title or c.id)
            meta = []
            if c.category:
                meta.append(md_escape(" > ".join(c.category)))
            meta.append(f"score {c.score:.2f}")
            snip = show(c.snippet, mark=_bold, escape=md_escape)
            lines.append(f"{i}. **{title}** ({'; '.join(meta)}){' — ' + snip if snip else ''} [{i}]")
    follow = [r.get("multitoken") for r in (answer.sections.get("embeddings") or [])][:5]
    if follow:
        lines.append("")
        lines.append("Related: " + ", ".join(md_escape(f) for f in follow if f))
    if cards:
        lines.append("")
        lines.append("Sources:")
        spans: dict[int, list[str]] = {}
        for p in summary:
            spans.setdefault(p.n, []).append(f"{p.start}–{p.end}")
        for i, c in enumerate(cards, 1):
            src = f" — {md_escape(c.source)}" if c.source else ""
            quoted = f"; quoted: characters {', '.join(spans[i])}" if i in spans else ""
            lines.append(f"[{i}] `{c.id.replace('`', '')}` — {md_escape(c.title or c.id)}{src}{quoted}")
    routing = getattr(answer, "routing", None)
    if routing:  # a split model: which sub-models answered, and why
        lines.append("")
        asked = ", ".join(md_escape(n) for n in routing["asked"])
        lines.append(f"Sub-models asked: {asked} ({md_escape(routing['why'])}).")
    return "\n".join(lines)
