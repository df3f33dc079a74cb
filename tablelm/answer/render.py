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


#: Cards and section rows shown by the compact rendering (``-v`` shows every card and row).
COMPACT_CARDS = 5
COMPACT_ROWS = 5
_KIND_PREFIXES = ("fn:", "cls:", "attr:", "mod:", "topic:")


def _repeats_title(card) -> bool:
    """An id that only repeats the title (``fn:open`` for ``open``) is noise in the compact view."""
    bare = card.id.split(":", 1)[1] if card.id.startswith(_KIND_PREFIXES) else card.id
    return bare == card.title


def _span(factor: dict) -> str:
    """Where a factor's evidence is, when it says (the best passage's characters)."""
    return f" (characters {factor['span'][0]}-{factor['span'][1]})" if "span" in factor else ""


def plan_facts(plan: dict, verbose: bool) -> list[str]:
    """What the prompt became, in words: what matched, and every word that did not count."""
    facts = []
    if plan.get("agent") and verbose:
        facts.append(f"agent: {plan['agent']}")
    if plan["multitokens_matched"]:
        facts.append("matched: " + ", ".join(plan["multitokens_matched"]))
    if verbose:
        dropped = plan["dropped"]
        if dropped.get("contained"):
            facts.append("also inside a longer match: " + ", ".join(dropped["contained"]))
        if dropped.get("generic"):
            facts.append("too frequent to count (max_token_count): " + ", ".join(dropped["generic"]))
    if plan.get("phrases"):
        facts.append("exact phrase: " + ", ".join(f'"{p}"' for p in plan["phrases"]))
    letters, phrases = plan.get("single_letters") or [], plan.get("letter_phrases") or []
    found = plan.get("letter_multitokens") or []
    said = ", ".join(f'"{p}"' for p in phrases)
    if phrases and plan.get("letters_indexed") is False:
        facts.append(f"this model does not index single letters (built before letter phrases; tablelm upgrade "
                     f"indexes them): {said} matched its words only")
    elif found:
        facts.append("a single letter counts with the word next to it: " + ", ".join(f'"{p}"' for p in found))
    elif phrases:
        facts.append(f"a single letter counts with the word next to it: no entity says {said}")
    alone = [x for x in letters if not any(x in p.split() for p in phrases)]
    if alone:
        facts.append("single letters are no terms of their own, so they were not matched: " + ", ".join(alone))
    missing = plan.get("forced_not_in_dictionary") or []
    if missing:
        facts.append("not in the dictionary, so its words were matched one by one: " + ", ".join(missing))
    for key, label in (("unknown", "not in the corpus"), ("excluded", "entities left out for"),
                       ("ignored", "ignored"), ("filters", "only")):
        if plan.get(key):
            facts.append(f"{label}: " + ", ".join(map(str, plan[key])))
    return facts


def summary_lines(summary, width: int) -> list[str]:
    """The short cited answer: each quoted passage with its [n], then what each [n] cites."""
    if summary is None or not summary.passages:
        return []
    lines = []
    for p in summary.passages:
        lines += textwrap.wrap(f"{' '.join(p.text.split())} [{p.n}]", width=width - 2,
                               initial_indent="  ", subsequent_indent="  ")
    cites = [f"[{p.n}] {p.entity} characters {p.start}-{p.end}" for p in summary.passages]
    lines += textwrap.wrap("   ".join(cites), width=width - 2, initial_indent="  ", subsequent_indent="  ")
    return lines


def render_text(answer: Answer, *, color: bool = False, width: int = 100, verbose: bool = False) -> str:
    """A human-readable rendering of an answer.

    Compact (the default): the short cited answer, the top :data:`COMPACT_CARDS` cards (title,
    category, one snippet) and one line per section. ``verbose``: every card with its score
    factors, why it scored and its source, and every section row.
    """
    plan = answer.plan
    mark = (lambda t: f"{_BOLD}{t}{_PLAIN}") if color else (lambda t: f"[{t}]")
    lines = [f"Prompt: {answer.prompt}"]
    lines += ["  " + f for f in plan_facts(plan, verbose)]
    if answer.routing:  # a split model: which sub-models answered, and why
        lines.append(f"  sub-models asked: {', '.join(answer.routing['asked'])} ({answer.routing['why']})")
    summary = summary_lines(answer.summary, width)
    if summary:
        lines += [""] + summary
    sections = [(n, rows) for n, rows in answer.sections.items() if rows]
    if not answer.cards:
        hint = " Try other words, or one of the suggestions below." if sections else " Try other words."
        lines.append("\nNo entity matches this prompt." + hint)
    cards = answer.cards if verbose else answer.cards[:COMPACT_CARDS]
    for c in cards:
        lines.append("")
        shown_id = "" if not verbose and _repeats_title(c) else f"   [{c.id}]"
        lines.append(f"{c.rank:>2}. {c.title or c.id}{shown_id}   score {c.score:.3f}")
        meta = []
        if c.category:
            meta.append(" > ".join(c.category))
        if c.tags and verbose:
            meta.append("tags: " + ", ".join(c.tags[:6]))
        if meta:
            lines.append("    " + " · ".join(meta))
        if verbose:
            why = []
            for w in c.why[:6]:
                if "contribution" in w:
                    why.append(f"{w['multitoken']} +{w['contribution']:.2f}")
                else:
                    why.append(f"{w['multitoken']} (count {w['corpus_count']})")
            if why:
                lines.append("    why: " + ", ".join(why))
            if c.factors:
                lines.append("    boosted: " + ", ".join(f"{f['name']}{_span(f)} x{f['multiplier']:.2f}"
                                                    for f in c.factors))
        snip = show(c.snippet, mark=mark)
        if snip:
            wrapped = textwrap.wrap(snip, width=width - 6)
            if not verbose and len(wrapped) > 2:
                wrapped = wrapped[:2]
                wrapped[-1] = wrapped[-1].rstrip("…") + "…"
            lines += ["      " + ln for ln in wrapped]
        if c.source and verbose:
            lines.append(f"    source: {c.source}")
    if len(cards) < len(answer.cards):
        more = len(answer.cards) - len(cards)
        lines.append(f"\n    ... and {more} more cards (-v shows them all, and why each scored)")
    if sections:
        lines.append("")
        lines.append("Sections" if verbose else "See also")
        for name, rows in sections:
            key = "multitoken" if name == "embeddings" else "label"
            label = "follow-up prompts" if name == "embeddings" else name
            shown = rows if verbose else rows[:COMPACT_ROWS]
            items = ", ".join(f"{r[key]} ({r['title']})" if r.get("title") else str(r[key]) for r in shown)
            wrapped = textwrap.wrap(items, width=width - 22) or [""]
            if not verbose:
                wrapped = wrapped[:1]
            for i, ln in enumerate(wrapped):
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
