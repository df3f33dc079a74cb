"""The parameter table of README.md, from the registry: ``python scripts/params_doc.py --write``."""

from tablelm.params import REGISTRY


def table() -> str:
    rows = ["| name | stage | default | rule | what it does |", "|---|---|---|---|---|"]
    for p in REGISTRY.values():
        d = p.to_dict()
        default = ",".join(d["default"]) if isinstance(d["default"], list) else d["default"]
        rows.append(f"| `{p.name}` | {p.stage} | `{default}` | {d['rule']} | {p.help} |")
    return "\n".join(rows)


def write_readme(path="README.md") -> None:
    """Replace the table between the params markers of README.md."""
    import re

    text = open(path, encoding="utf-8").read()
    new = re.sub(r"(<!-- params:start -->\n).*?(\n<!-- params:end -->)",
                 lambda m: m.group(1) + table() + m.group(2), text, flags=re.S)
    open(path, "w", encoding="utf-8").write(new)


if __name__ == "__main__":
    import sys

    if "--write" in sys.argv:
        write_readme()
    else:
        print(table())
