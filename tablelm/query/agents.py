"""Agents: actions attached to intents (prompt side) and to entities (corpus side).

An agent is detected from the intent words of a prompt ("how do I", "what is",
"example") before those words are dropped as stopwords. At build time each
entity is marked with the agents its content serves, by rules over its tags,
title and text. When a prompt's agent matches an entity's, the tablelm ranker
multiplies the entity's score by ``agent_boost``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Agent:
    name: str
    prompt: re.Pattern          # intent words in a prompt
    entity: re.Pattern | None   # what an entity serving this agent contains (None: no entity rule)
    help: str
    hints: tuple = ()           # lowercase substrings one of which a match must contain (a cheap pre-check)
    needles: tuple = ()         # the same for ``prompt`` in a lowercased ASCII prompt (detect_agent's pre-check)


AGENTS = (
    Agent("example", re.compile(r"\b(examples?|sample code|snippet|demo|show me)\b", re.I),
          re.compile(r">>>|\bfor example\b|\bexamples?\b|\be\.g\.", re.I),
          "The user wants an example; entities with examples are boosted.", (">>>", "xample", "e.g."),
          ("example", "sample code", "snippet", "demo", "show me")),
    Agent("howto", re.compile(r"\bhow (do|to|can|should|would|does)\b|\bhow\b", re.I),
          None, "The user wants a procedure.", (), ("how",)),
    Agent("definition", re.compile(r"\bwhat (is|are|does)\b|\bdefin(e|ition)\b|\bmeaning of\b", re.I),
          None, "The user wants a definition.", (), ("what ", "defin", "meaning of")),
    Agent("compare", re.compile(r"\bdifference between\b|\bvs\.?\b|\bversus\b|\bcompare\b", re.I),
          None, "The user wants a comparison.", (), ("difference between", "vs", "versus", "compare")),
    Agent("list", re.compile(r"^\s*(list|which|enumerate)\b", re.I), None, "The user wants a list.", (),
          ("list", "which", "enumerate")),
)
AGENT_NAMES = tuple(a.name for a in AGENTS)
# any agent's needle; only when every agent has needles can finding none rule them all out
NEEDLES = tuple(n for a in AGENTS for n in a.needles)
_NEEDLES = re.compile("|".join(map(re.escape, NEEDLES)) if all(a.needles for a in AGENTS) else "")


def detect_agent(prompt: str) -> str | None:
    """The first agent whose intent words occur in ``prompt``, or None. An ASCII prompt is lowercased
    once and an agent's regex tried only when one of its needles is in it (re.I on ASCII text is
    ASCII case folding, so a match always contains one)."""
    low = None
    if prompt.isascii():
        low = prompt.lower()
        if not _NEEDLES.search(low):  # no agent's needle: most prompts
            return None
    for a in AGENTS:
        if low is not None and a.needles and not any(n in low for n in a.needles):
            continue
        if a.prompt.search(prompt):
            return a.name
    return None


def entity_agents(entities) -> np.ndarray:
    """One bit per agent (bit i = AGENTS[i]) for every entity, from the entity rules."""
    bits = np.zeros(len(entities), dtype=np.uint8)
    for i, a in enumerate(AGENTS):
        if a.entity is None:
            continue
        for d, e in enumerate(entities):
            text = e.text
            if a.name in e.tags or ((any(h in text or h.upper() in text for h in a.hints) or not a.hints)
                                      and a.entity.search(text)):
                bits[d] |= 1 << i
    return bits


def agent_bit(name: str | None) -> int:
    return 0 if name is None else 1 << AGENT_NAMES.index(name)
