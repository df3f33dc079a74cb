"""The structured answer: cards with scores, reasons and citations, plus sections."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Citation:
    """Where evidence sits: entity id, field, character span, and the exact text."""

    entity: str
    field: str
    start: int
    end: int
    text: str
    multitoken: str


@dataclass
class Snippet:
    """A window of the entity's text with the matched spans (relative offsets)."""

    text: str
    start: int
    end: int
    highlights: list[tuple[int, int]] = field(default_factory=list)
    text_chars: int = -1  # length of the whole text: an ellipsis goes where the window stops short

    def __post_init__(self):
        if self.text_chars < 0:
            self.text_chars = self.end


@dataclass
class Card:
    """One ranked entity."""

    rank: int
    id: str
    title: str
    category: list[str]
    tags: list[str]
    score: float
    why: list[dict]
    citations: list[Citation]
    snippet: Snippet | None
    source: str = ""
    related: list[str] = field(default_factory=list)
    factors: list[dict] = field(default_factory=list)  # score multipliers (agent, knowledge graph)
    submodel: str | None = None  # the sub-model it comes from (a split model, tablelm/submodels.py)

    def to_dict(self) -> dict:
        # written out rather than dataclasses.asdict, which deep-copies and costs ms per answer
        sn = self.snippet
        return {
            "rank": self.rank, "id": self.id, "title": self.title, "category": self.category,
            "tags": self.tags, "score": self.score, "why": self.why,
            "citations": [{"entity": c.entity, "field": c.field, "start": c.start, "end": c.end,
                           "text": c.text, "multitoken": c.multitoken} for c in self.citations],
            "snippet": None if sn is None else {"text": sn.text, "start": sn.start, "end": sn.end,
                                                "highlights": [list(h) for h in sn.highlights],
                                                "text_chars": sn.text_chars},
            "source": self.source, "related": self.related, "factors": self.factors,
            **({"submodel": self.submodel} if self.submodel is not None else {}),
        }


@dataclass
class Answer:
    """What ``Model.ask`` returns; text, JSON and HTML are renderings of it."""

    prompt: str
    plan: dict
    cards: list[Card]
    sections: dict
    params: dict
    timings_ms: dict
    model: dict
    summary: Any = None  # answer.summary.Summary: the short cited answer on top
    routing: dict | None = None  # a split model's: the sub-models asked and why (tablelm/router.py)

    def to_dict(self) -> dict:
        return {
            "prompt": self.prompt,
            "summary": self.summary.to_dict() if self.summary is not None else None,
            "plan": self.plan,
            "cards": [c.to_dict() for c in self.cards],
            "sections": self.sections,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in self.params.items()},
            "timings_ms": self.timings_ms,
            "model": self.model,
            **({"routing": self.routing} if self.routing is not None else {}),
        }

    def to_json(self, indent: int | None = 2) -> str:
        import json

        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)
