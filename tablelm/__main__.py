"""``python -m tablelm``: the same command line as the ``tablelm`` script."""

from .interfaces.cli import main

if __name__ == "__main__":  # pragma: no cover
    main(prog_name="tablelm")
