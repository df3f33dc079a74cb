"""tablelm: an untrained LLM.

A specialized corpus becomes a set of backend tables in one deterministic counting
pass; a prompt is answered by table lookups with ranked, cited cards.

>>> import tablelm
>>> model = tablelm.build(["corpus.jsonl"], "model/")      # doctest: +SKIP
>>> answer = model.ask("how do I read a file line by line")  # doctest: +SKIP
"""

from .answer.types import Answer, Card, Citation
from .corpus.entity import TextEntity
from .errors import CorpusError, ModelError, ParamError, TablelmError
from .model import Model, __version__, build, load

__all__ = ["build", "load", "Model", "Answer", "Card", "Citation", "TextEntity",
           "TablelmError", "CorpusError", "ParamError", "ModelError", "__version__"]
