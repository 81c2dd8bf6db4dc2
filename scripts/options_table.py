"""Print the README's option tables from headroom.config (the single source).

    python scripts/options_table.py                 # headroom proxy
    python scripts/options_table.py model-server    # headroom model-server
    python scripts/options_table.py --write         # both, into README.md between their markers
"""

import sys
from pathlib import Path

from headroom.config import MODEL_SERVER_OPTIONS, OPTIONS, ModelServerConfig, ProxyConfig


def options_table(options=OPTIONS, defaults=None) -> str:
    rows = ["| Flag | Environment variable | Default | Meaning |", "| --- | --- | --- | --- |"]
    defaults = defaults or ProxyConfig()
    for option in options:
        default = getattr(defaults, option.field)
        shown = "off" if default is None else (("on" if default else "off") if isinstance(default, bool) else default)
        meaning = option.help
        if option.choices:
            meaning += f" ({'/'.join(option.choices)})"
        rows.append(f"| `{option.flag}` | `{option.env}` | `{shown}` | {meaning} |")
    return "\n".join(rows)


def write_readme(path: Path) -> None:
    text = path.read_text()
    for marker, table in (("options-table", options_table()),
                          ("model-server-options", options_table(MODEL_SERVER_OPTIONS, ModelServerConfig()))):
        head, rest = text.split(f"<!-- {marker}:start -->")
        _, tail = rest.split(f"<!-- {marker}:end -->")
        text = f"{head}<!-- {marker}:start -->\n{table}\n<!-- {marker}:end -->{tail}"
    path.write_text(text)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_readme(Path(__file__).resolve().parent.parent / "README.md")
    elif sys.argv[1:] == ["model-server"]:
        print(options_table(MODEL_SERVER_OPTIONS, ModelServerConfig()))
    else:
        print(options_table())
