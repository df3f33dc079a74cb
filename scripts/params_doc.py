"""Print the parameter table of README.md from the registry (python scripts/params_doc.py)."""

from tablelm.params import REGISTRY


def table() -> str:
    rows = ["| name | stage | default | rule | what it does |", "|---|---|---|---|---|"]
    for p in REGISTRY.values():
        d = p.to_dict()
        default = ",".join(d["default"]) if isinstance(d["default"], list) else d["default"]
        rows.append(f"| `{p.name}` | {p.stage} | `{default}` | {d['rule']} | {p.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
