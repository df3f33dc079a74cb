"""Snippets: the one rule for cutting a window out of an entity's text, and for showing it.

Every renderer (text, Markdown, the web page through the JSON) shows a snippet the same way:
the window is cut at word boundaries around the strongest matched span, highlights are merged
where they overlap, and an ellipsis marks a side only where text was cut off there. A window
that holds the whole text gets no ellipsis at all.
"""

from __future__ import annotations

from .types import Snippet

ELLIPSIS = "…"


def make_snippet(text: str, spans, width: int, best: str | None = None) -> Snippet | None:
    """A window of about ``width`` characters of ``text``, centred on the strongest span.

    Parameters
    ----------
    text : str
        The entity's text.
    spans : list of (start, end, multitoken)
        Matched spans in ``text``; the window centres on the first whose multitoken is
        ``best`` (else the first span, else the start of the text).
    width : int
        Target width; the window widens to whole words, so it may be a little longer.
    """
    if not text:
        return None
    if spans:
        focus = next((s for s in spans if s[2] == best), spans[0])
        centre = (focus[0] + focus[1]) // 2
    else:
        centre = 0
    start = max(0, min(centre - width // 2, len(text) - width))
    end = min(len(text), start + width)
    while start > 0 and not text[start - 1].isspace() and centre - start < width:
        start -= 1
    while end < len(text) and not text[end].isspace() and end - centre < width:
        end += 1
    window = text[start:end]
    highlights = [(s - start, e - start) for s, e, _ in spans if s >= start and e <= end]
    return Snippet(text=window, start=start, end=end, highlights=highlights, text_chars=len(text))


def merge_spans(spans) -> list[tuple[int, int]]:
    """Overlapping highlight spans merged (a word inside a matched phrase is one highlight)."""
    out: list[list[int]] = []
    for s, e in sorted((int(a), int(b)) for a, b in spans if b > a):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def segments(snippet: Snippet) -> list[tuple[str, bool]]:
    """The window as ``(text, highlighted)`` pieces, in order, whitespace runs kept."""
    text, out, last = snippet.text, [], 0
    for s, e in merge_spans(snippet.highlights):
        if s > last:
            out.append((text[last:s], False))
        out.append((text[s:e], True))
        last = e
    if last < len(text):
        out.append((text[last:], False))
    return out


def show(snippet: Snippet | None, mark=lambda t: f"[{t}]", escape=lambda t: t) -> str:
    """The snippet on one line: highlights through ``mark``, other text through ``escape``,
    blanks collapsed, and an ellipsis on each side where the entity's text goes on."""
    if snippet is None or not snippet.text:
        return ""
    body = "".join(mark(escape(t)) if hi else escape(t) for t, hi in segments(snippet))
    body = " ".join(body.split())
    left = ELLIPSIS if snippet.start > 0 else ""
    right = ELLIPSIS if snippet.end < snippet.text_chars else ""
    return f"{left}{body}{right}"
