"""Print the README's option table from headroom.config.OPTIONS (the single source)."""

from headroom.config import OPTIONS, ProxyConfig


def options_table() -> str:
    rows = ["| Flag | Environment variable | Default | Meaning |", "| --- | --- | --- | --- |"]
    defaults = ProxyConfig()
    for option in OPTIONS:
        default = getattr(defaults, option.field)
        shown = "off" if default is None else (("on" if default else "off") if isinstance(default, bool) else default)
        meaning = option.help + (f" — *not available yet ({option.not_yet})*" if option.not_yet else "")
        if option.choices:
            meaning += f" ({'/'.join(option.choices)})"
        rows.append(f"| `{option.flag}` | `{option.env}` | `{shown}` | {meaning} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(options_table())
