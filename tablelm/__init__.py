"""tablelm: an untrained LLM.

A specialized corpus becomes a set of backend tables in one deterministic counting
pass; a prompt is answered by table lookups with ranked, cited cards.

>>> import tablelm
>>> model = tablelm.build(["corpus.jsonl"], "model/")      # doctest: +SKIP
>>> answer = model.ask("how do I read a file line by line")  # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from .errors import CorpusError, ModelError, ParamError, TablelmError

if TYPE_CHECKING:
    from .answer.types import Answer, Card, Citation
    from .corpus.entity import TextEntity
    from .model import Model, __version__, build, load

#: imported on first use, so that ``tablelm --help`` (the CLI is inside the package) does not
#: import numpy and the model code to list its commands
_LAZY = {"build": "model", "load": "model", "Model": "model", "__version__": "model", "Answer": "answer.types",
         "Card": "answer.types", "Citation": "answer.types", "TextEntity": "corpus.entity"}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tablelm' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["build", "load", "Model", "Answer", "Card", "Citation", "TextEntity",
           "TablelmError", "CorpusError", "ParamError", "ModelError", "__version__"]
