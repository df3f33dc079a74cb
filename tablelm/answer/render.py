"""Text rendering of an :class:`Answer` (JSON is ``Answer.to_json``)."""

from __future__ import annotations

import re
import textwrap

from .snippets import show
from .types import Answer


#: C0 and C1 control characters and DEL, except newline and tab: ESC, BEL, CR, backspace...
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_BOLD, _PLAIN = "\ue000", "\ue001"  # private-use stand-ins for our own escapes, put back last


def terminal_safe(text: str) -> str:
    """``text`` with its control characters shown as ``\\x1b`` etc. instead of sent raw.

    Corpus text reaches the terminal: a title holding ``ESC ]0;...BEL`` would retitle it, an
    OSC 52 sequence write the clipboard, ``ESC c`` clear the screen.
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text)


def render_text(answer: Answer, *, color: bool = False, width: int = 100) -> str:
    """A human-readable rendering: the plan, the cards, the sections."""
    plan = answer.plan
    lines = [f"Prompt: {answer.prompt}"]
    facts = []
    if plan.get("agent"):
        facts.append(f"agent: {plan['agent']}")
    if plan["multitokens_matched"]:
        facts.append("matched: " + ", ".join(plan["multitokens_matched"]))
    dropped = [f"{w} ({why})" for why, ws in plan["dropped"].items() for w in ws]
    if dropped:
        facts.append("distilled: " + ", ".join(dropped))
    for key, label in (("unknown", "not in corpus"), ("excluded", "excluded"), ("ignored", "ignored")):
        if plan.get(key):
            facts.append(f"{label}: " + ", ".join(plan[key]))
    for f in facts:
        lines.append("  " + f)
    if not answer.cards:
        lines.append("\nNo entity matches this prompt. Try other words, or look at the suggestions below.")
    for c in answer.cards:
        lines.append("")
        lines.append(f"{c.rank:>2}. {c.title or c.id}   [{c.id}]   score {c.score:.3f}")
        meta = []
        if c.category:
            meta.append(" > ".join(c.category))
        if c.tags:
            meta.append("tags: " + ", ".join(c.tags[:6]))
        if meta:
            lines.append("    " + " · ".join(meta))
        why = []
        for w in c.why[:6]:
            if "contribution" in w:
                why.append(f"{w['multitoken']} +{w['contribution']:.2f}")
            else:
                why.append(f"{w['multitoken']} (count {w['corpus_count']})")
        if why:
            lines.append("    why: " + ", ".join(why))
        if c.factors:
            lines.append("    boosted: " + ", ".join(f"{f['name']} x{f['multiplier']:.2f}" for f in c.factors))
        snip = show(c.snippet, mark=(lambda t: f"{_BOLD}{t}{_PLAIN}") if color else (lambda t: f"[{t}]"))
        if snip:
            for ln in textwrap.wrap(snip, width=width - 6):
                lines.append("      " + ln)
        if c.source:
            lines.append(f"    source: {c.source}")
    sections = [(n, rows) for n, rows in answer.sections.items() if rows]
    if sections:
        lines.append("")
        lines.append("Sections")
        for name, rows in sections:
            key = "multitoken" if name == "embeddings" else "label"
            label = "follow-up prompts" if name == "embeddings" else name
            items = ", ".join(f"{r[key]} ({r['title']})" if r.get("title") else str(r[key]) for r in rows)
            for i, ln in enumerate(textwrap.wrap(items, width=width - 22) or [""]):
                lines.append(f"  {label if i == 0 else '':<19} {ln}")
    lines.append("")
    lines.append(f"({len(answer.cards)} cards in {answer.timings_ms['total']:.1f} ms)")
    out = terminal_safe("\n".join(lines))
    return out.replace(_BOLD, "\x1b[1m").replace(_PLAIN, "\x1b[0m") if color else out


def render_entity(e) -> str:
    """The full content of an entity as text (``tablelm show``, the chat's ``-i``)."""
    lines = [f"== {e.id}: {e.title}"]
    for label, value in (("category", " > ".join(e.category)), ("tags", ", ".join(e.tags)),
                         ("related", ", ".join(e.related)), ("source", e.source)):
        if value:
            lines.append(f"{label}: {value}")
    return terminal_safe("\n".join(lines + ["", e.text, ""]))
