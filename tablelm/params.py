"""The one parameter registry.

Every parameter tablelm has is declared here once: name, default, constraint,
help text and stage. The Python API (keyword arguments), the CLI
(``-p name=value``), the HTTP API (query arguments), the manifest and
``tablelm params`` all derive from this table, so they cannot drift apart.

Stages
------
read
    How sources become entities (encoding, bad records, PDF units, ...); a
    keyword of ``tablelm.build`` and ``Model.add``, a flag of ``tablelm build``.
build
    Changes the tables; changing it needs a rebuild.
query
    Read at answer time; can change on every call.
render
    Only changes how an answer is shown.

A constraint object both validates a value and writes the error message
(as in scikit-learn's parameter validation), so message and rule agree.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from .errors import ParamError
from .text.languages import LANGUAGES


# --------------------------------------------------------------------------- constraints
@dataclass(frozen=True)
class Interval:
    """A number in ``[lo, hi]``; ``kind`` is ``int`` or ``float``."""

    kind: type
    lo: float
    hi: float

    def describe(self) -> str:
        return f"{'an int' if self.kind is int else 'a float'} in [{self.lo}, {self.hi}]"

    def convert(self, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, str):
            value = value.strip()
            value = int(value) if self.kind is int else float(value)
        if self.kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            value = int(value)
        else:
            value = float(value)
        if not (self.lo <= value <= self.hi):
            raise ValueError
        return value


@dataclass(frozen=True)
class Options:
    """One of a fixed set of strings."""

    choices: tuple[str, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)

    def convert(self, value: Any) -> Any:
        if not isinstance(value, str) or value.strip() not in self.choices:
            raise ValueError
        return value.strip()


@dataclass(frozen=True)
class Flag:
    """A boolean; strings true/false/1/0/yes/no/on/off are accepted."""

    def describe(self) -> str:
        return "a boolean (true or false)"

    def convert(self, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            v = value.strip().lower()
            if v in ("true", "1", "yes", "on"):
                return True
            if v in ("false", "0", "no", "off"):
                return False
        raise ValueError


@dataclass(frozen=True)
class WordList:
    """A list of words; a string is split on commas."""

    choices: tuple[str, ...] | None = None

    def describe(self) -> str:
        if self.choices:
            return "a comma-separated list of " + ", ".join(repr(c) for c in self.choices)
        return "a comma-separated list of words"

    def convert(self, value: Any) -> Any:
        if isinstance(value, str):
            items = [w.strip() for w in value.split(",")]
        elif isinstance(value, (list, tuple)):
            items = [str(w).strip() for w in value]
        else:
            raise ValueError
        words = tuple(w for w in items if w)
        if self.choices and any(w not in self.choices for w in words):
            raise ValueError
        return words


@dataclass(frozen=True)
class Codec:
    """The name of a Python text codec (``codecs.lookup`` knows it)."""

    def describe(self) -> str:
        return "a Python codec name such as 'utf-8' or 'cp1252'"

    def convert(self, value: Any) -> Any:
        import codecs

        if not isinstance(value, str):
            raise ValueError
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError from None
        return value


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Param:
    """One declared parameter."""

    name: str
    default: Any
    constraint: Any
    help: str
    stage: str  # read | build | query | render

    def validate(self, value: Any) -> Any:
        """Return ``value`` converted to the parameter's type, or raise ParamError."""
        try:
            return self.constraint.convert(value)
        except (ValueError, TypeError):
            raise ParamError(
                f"The {self.name!r} parameter must be {self.constraint.describe()}. Got {value!r}."
            ) from None

    def to_dict(self) -> dict:
        c = self.constraint
        d = {"name": self.name, "default": _jsonable(self.default), "stage": self.stage,
             "help": self.help, "type": type(c).__name__.lower(), "rule": c.describe()}
        if isinstance(c, Interval):
            d.update(type=c.kind.__name__, min=c.lo, max=c.hi)
        elif isinstance(c, Options):
            d.update(choices=list(c.choices))
        elif isinstance(c, WordList) and c.choices:
            d.update(choices=list(c.choices))
        return d


def _jsonable(v):
    return list(v) if isinstance(v, tuple) else v


SECTIONS = ("categories", "tags", "titles", "related", "embeddings")

_PARAMS = [
    # ---- read: how sources become entities (tablelm.build / Model.add keywords, build/add/update flags)
    Param("encoding", "utf-8", Codec(), "Text encoding of the sources, e.g. cp1252 (a BOM is skipped).", "read"),
    Param("on_error", "fail", Options(("fail", "skip")),
          "A malformed record stops the read ('fail') or is reported with its file and line and skipped "
          "('skip', the command line's default).", "read"),
    Param("pdf_unit", "paragraph", Options(("paragraph", "page")), "One entity per PDF paragraph or per page.",
          "read"),
    Param("max_file_mb", 512.0, Interval(float, 1e-6, 1e6), "Files larger than this (MB) are reported and skipped.",
          "read"),
    Param("dedupe_content", True, Flag(),
          "Drop an entity whose normalized content repeats an earlier one's (--keep-duplicates keeps them).", "read"),
    # ---- build: what goes into the tables
    Param("max_ngram", 4, Interval(int, 1, 4),
          "Longest multitoken, in words (stopwords are bridged, not counted).", "build"),
    Param("max_dist", 3, Interval(int, 1, 10),
          "Largest gap in words between two multitokens counted as a contextual pair (same sentence only).", "build"),
    Param("min_multitoken_count", 2, Interval(int, 1, 1000),
          "A multitoken of two or more words enters the dictionary when it occurs at least this often; "
          "single words always do.", "build"),
    Param("stem", True, Flag(),
          "Reduce words to their Snowball stem (answers show the most frequent real word).", "build"),
    Param("language", "en", Options(LANGUAGES),
          "Language of the corpus (ISO 639-1): its Snowball stemmer when there is one, its stopword list "
          "(stopwords-iso; 'en': tablelm's own), and for 'zh' and 'ja' character bigrams instead of words. "
          "Queries use the model's language.", "build"),
    # ---- query: matching and distillation
    Param("match_skip", 0, Interval(int, 0, 8),
          "Prompt words that a multitoken lookup may skip: 0 = consecutive prompt words only (in any order). "
          "Bounds the 2^n sub-combinations of long prompts.", "query"),
    Param("max_token_count", 0, Interval(int, 0, 10**9),
          "Distillation: drop a matched multitoken whose corpus count is above this (overly generic); "
          "0 = no limit.", "query"),
    Param("ignore", (), WordList(), "Words never used for matching (the ignore list).", "query"),
    Param("filter", (), WordList(),
          "Only entities with this category or tag: category=NAME, tag=NAME, or NAME for either (a category "
          "matches at any level of its path); several must all hold.", "query"),
    Param("ranker", "tablelm", Options(("tablelm", "reference")),
          "Entity ranking: 'tablelm' (BM25F over multitokens with phrase and knowledge-graph weights) or "
          "'reference' (the xLLM four-score dense-rank combination).", "query"),
    # ---- query: the tablelm ranker
    Param("k1", 1.5, Interval(float, 0.0, 5.0), "BM25 term-frequency saturation.", "query"),
    Param("b", 0.75, Interval(float, 0.0, 1.0), "BM25 length normalization.", "query"),
    Param("w_title", 2.0, Interval(float, 0.0, 10.0),
          "Weight of an occurrence in the title relative to one in the text (BM25F field weight).", "query"),
    Param("w_category", 0.3, Interval(float, 0.0, 10.0), "Weight of an occurrence in the category path.", "query"),
    Param("w_tags", 1.0, Interval(float, 0.0, 10.0), "Weight of an occurrence in the tags.", "query"),
    Param("w_meta", 0.1, Interval(float, 0.0, 10.0),
          "Weight of an occurrence in the metadata strings (authors, dates, other fields).", "query"),
    Param("w_context", 0.0, Interval(float, 0.0, 5.0),
          "Knowledge-graph vote: an entity's score is multiplied by 1 + w_context x the relevance of its best "
          "category or tag to the prompt (from the context tables), relative to the best one.", "query"),
    Param("w_importance", 0.0, Interval(float, 0.0, 5.0),
          "Entity importance prior: an entity's score is multiplied by 1 + w_importance x ln(1 + its in-links) / "
          "ln(1 + the most in-links), in-links being the entities that list it as related (0 = off).", "query"),
    Param("phrase_weight", 0.2, Interval(float, 0.0, 5.0),
          "Weight of a matched multitoken of two or more words relative to a single word.", "query"),
    Param("qtf_k3", 10.0, Interval(float, 0.0, 1000.0),
          "Query term frequency: a multitoken the prompt says qtf times weighs (k3+1)qtf/(k3+qtf) times more "
          "(BM25's k3 saturation; 0 = once however often repeated, 1000 = nearly proportional to qtf).", "query"),
    Param("phrase_mode", "stretch", Options(("stretch", "each")),
          "Phrase evidence: 'stretch' = the overlapping matched phrases of one stretch of the prompt count once "
          "per entity (its best one); 'each' = every matched phrase adds its own evidence.", "query"),
    Param("contained_weight", 1.0, Interval(float, 0.0, 1.0),
          "Weight kept by a word that distillation finds inside a longer matched multitoken "
          "(1 = keep fully, 0 = drop as the reference does).", "query"),
    Param("expansion_weight", 0.0, Interval(float, 0.0, 1.0),
          "Weight of related multitokens found through the PMI embeddings (0 = no expansion).", "query"),
    Param("expansion_terms", 5, Interval(int, 0, 100), "Related multitokens added per prompt multitoken.", "query"),
    Param("prf_weight", 0.0, Interval(float, 0.0, 1.0),
          "Pseudo-relevance feedback: weight of the terms taken from the top answers (0 = off).", "query"),
    Param("prf_docs", 5, Interval(int, 1, 50), "Pseudo-relevance feedback: answers read for new terms.", "query"),
    Param("prf_terms", 10, Interval(int, 1, 100), "Pseudo-relevance feedback: terms added.", "query"),
    Param("passage_words", 0, Interval(int, 0, 10_000),
          "Passage scoring: an entity longer than this many words may score as its best window of this many "
          "consecutive words (same BM25F, the window's length), when that is higher than the whole entity's "
          "score; 0 = whole entities only.", "query"),
    Param("passage_weight", 1.0, Interval(float, 0.0, 1.0),
          "Passage scoring: an entity whose best passage scores higher than the whole gets the whole's score "
          "plus this share of the difference (1 = the passage's score).", "query"),
    Param("passage_pool", 100, Interval(int, 1, 10_000),
          "Passage scoring: how many of the best entities (by their whole-entity score) are also scored by "
          "their best passage.", "query"),
    Param("agent_boost", 1.15, Interval(float, 1.0, 3.0),
          "Score factor for entities that carry the agent detected in the prompt (e.g. 'example').", "query"),
    # ---- query: the reference ranker
    Param("beta", 0.5, Interval(float, 0.0, 2.0),
          "Reference ranker: a matched token of corpus count c adds 1/c^beta to the specificity score.", "query"),
    # ---- query: embeddings (PMI) and sections
    Param("pmi", "sqrt", Options(("sqrt", "log2")),
          "PMI formula: 'sqrt' = n_AB/sqrt(n_A n_B), 'log2' = log2(N n_AB/(n_A n_B)).", "query"),
    Param("min_pmi", 0.0, Interval(float, -100.0, 100.0), "Embeddings: smallest PMI kept.", "query"),
    Param("nab_min", 2, Interval(int, 1, 10**6), "Embeddings: smallest pair count n_AB kept.", "query"),
    Param("embedding_key_min_size", 1, Interval(int, 1, 4),
          "Embeddings: only prompt multitokens with at least this many words get related multitokens.", "query"),
    Param("embedding_values_min_size", 1, Interval(int, 1, 4),
          "Embeddings: only related multitokens with at least this many words are shown.", "query"),
    Param("context_multitoken_min_size", 1, Interval(int, 1, 4),
          "Sections: only matched multitokens with at least this many words feed the context sections.", "query"),
    Param("sections", SECTIONS, WordList(SECTIONS), "Sections to compute and show.", "query"),
    Param("max_rows", 10, Interval(int, 0, 1000), "Largest number of rows in a section.", "query"),
    Param("section_min_count", 2, Interval(int, 1, 10**6),
          "Sections: a label (or a follow-up prompt) needs at least this count with a prompt multitoken.", "query"),
    Param("section_min_pmi", 2.0, Interval(float, -100.0, 100.0),
          "Sections: a label needs a log PMI with a prompt multitoken of at least this (0 = as often as chance; "
          "2 = e² ≈ 7 times chance).", "query"),
    # ---- render
    Param("snippet_chars", 160, Interval(int, 40, 2000), "Length of an evidence snippet, in characters.", "render"),
    Param("summary_sentences", 3, Interval(int, 0, 4),
          "The short answer on top: at most this many quoted passages of the top cards, chosen to cover the "
          "prompt's matched multitokens, each cited (0 = no summary).", "render"),
    Param("summary_cards", 5, Interval(int, 1, 20), "The short answer on top quotes only the first this many cards.",
          "render"),
]

REGISTRY: dict[str, Param] = {p.name: p for p in _PARAMS}
#: the stages, in the order a model meets them
STAGES = ("read", "build", "query", "render")
assert {p.stage for p in _PARAMS} == set(STAGES)


def defaults(stage: str | None = None) -> dict[str, Any]:
    """Default values, optionally of one stage only."""
    return {p.name: p.default for p in _PARAMS if stage is None or p.stage == stage}


def resolve(overrides: dict[str, Any] | None = None, *, stage: str | tuple[str, ...] | None = None,
            base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``overrides`` and merge them over ``base`` (or the defaults).

    Raises
    ------
    ParamError
        For an unknown name (with the closest known names) or a value that breaks
        its constraint.
    """
    stages = (stage,) if isinstance(stage, str) else stage
    out = dict(base) if base is not None else {
        p.name: p.default for p in _PARAMS if stages is None or p.stage in stages}
    for name, value in (overrides or {}).items():
        p = REGISTRY.get(name)
        if p is None or (stages is not None and p.stage not in stages):
            raise ParamError(unknown_message(name, stages))
        out[name] = p.validate(value)
    return out


#: the largest number of cards an answer has
MAX_K = 1000


def check_k(k: Any, limit: int | None = MAX_K) -> int:
    """The number of cards or results: an int (a numpy int too, never a bool) in [1, ``limit``]."""
    if isinstance(k, numbers.Integral) and not isinstance(k, bool) and 1 <= int(k) <= (limit or int(k)):
        return int(k)
    rule = f"an int in [1, {limit}]" if limit else "a positive int"
    raise ParamError(f"The 'k' parameter must be {rule} (the number of results). Got {k!r}.")


def check(name: str, value: Any) -> Any:
    """``value`` validated by the registry's rule for ``name`` (a ParamError names the rule)."""
    return REGISTRY[name].validate(value)


def unknown_message(name: str, stages=None) -> str:
    import difflib

    names = [p.name for p in _PARAMS if stages is None or p.stage in stages]
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    where = f" ({'/'.join(stages)} stage)" if stages else ""
    return f"Unknown parameter {name!r}{where}.{hint} Run 'tablelm params' for the list."


def parse_assignments(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Parse CLI ``name=value`` strings into a dict (values still strings)."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ParamError(f"Parameter {item!r} is not of the form name=value, e.g. -p k1=1.5.")
        out[name.strip()] = value
    return out
