"""The unit of retrieval: a text entity with its knowledge-graph fields."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TextEntity:
    """One retrievable piece of a corpus.

    Parameters
    ----------
    id : str
        Unique, stable identifier (BEIR ``_id``, file path + heading anchor, ...).
    text : str
        The body text; citations are character spans into it.
    title : str
        Title of the entity (knowledge-graph field).
    category : tuple of str
        Category path from the most general to the most specific, e.g.
        ``("os", "os.path")``. The last element is the category, the one before
        it the parent category.
    tags : tuple of str
        Tags / keywords (knowledge-graph field).
    related : tuple of str
        Related items ("see also"): ids or names of other entities.
    source : str
        Where the entity comes from: a URL, or ``path:line``.
    metadata : dict
        Any other fields, JSON-serializable, kept as they are.
    """

    id: str
    text: str
    title: str = ""
    category: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    source: str = ""
    metadata: dict = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict:
        """A JSON-serializable dict with every field."""
        return {
            "id": self.id,
            "title": self.title,
            "category": list(self.category),
            "tags": list(self.tags),
            "related": list(self.related),
            "source": self.source,
            "metadata": self.metadata,
            "text": self.text,
        }

    def to_record(self) -> dict:
        """:meth:`to_dict` without the empty fields: the entity store's line (``from_dict`` restores them)."""
        return {k: v for k, v in self.to_dict().items() if v or k in ("id", "text")}

    @classmethod
    def from_dict(cls, d: dict) -> TextEntity:
        """Inverse of :meth:`to_dict`."""
        return cls(
            id=d["id"],
            text=d.get("text", ""),
            title=d.get("title", ""),
            category=tuple(d.get("category", ())),
            tags=tuple(d.get("tags", ())),
            related=tuple(d.get("related", ())),
            source=d.get("source", ""),
            metadata=d.get("metadata", {}) or {},
        )
