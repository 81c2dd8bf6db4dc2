"""``headroom report --png``: savings over time, drawn with matplotlib (an optional extra)."""

from __future__ import annotations

from headroom.report.summary import Report

INSTALL_HINT = "pip install 'headroom-ai[report]'"


def matplotlib_missing() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return True
    return False


def draw_png(report: Report, path: str) -> None:
    """Savings over time: dollars spent and saved per day, and tokens before/after per day."""
    from datetime import datetime

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    days = [datetime.strptime(day, "%Y-%m-%d") for day, _ in report.days]
    totals = [t for _, t in report.days]
    figure = Figure(figsize=(10, 6.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    money, tokens = figure.subplots(2, 1, sharex=True)
    marker = "o" if len(days) <= 60 else None
    money.plot(days, [t.usd_spent for t in totals], marker=marker, label="spent", color="#c0392b")
    money.plot(days, [t.usd_saved for t in totals], marker=marker, label="saved", color="#27ae60")
    money.set_ylabel("USD per day")
    money.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"${v:,.2f}"))
    saved, spent = report.totals.usd_saved, report.totals.usd_spent
    # An escaped $ is a dollar sign; two bare ones would start mathtext.
    money.set_title(f"Headroom: \\${saved:,.2f} saved, \\${spent:,.2f} spent"
                    f" ({report.totals.requests:,} requests)")
    money.set_ylim(bottom=0)
    money.legend(loc="best")
    money.grid(alpha=0.3)
    tokens.plot(days, [t.tokens_before for t in totals], marker=marker, label="tokens before", color="#7f8c8d")
    tokens.plot(days, [t.tokens_after for t in totals], marker=marker, label="tokens after", color="#2980b9")
    tokens.fill_between(days, [t.tokens_after for t in totals], [t.tokens_before for t in totals],
                        color="#2980b9", alpha=0.12, label="removed")
    tokens.set_ylabel("input tokens per day")
    tokens.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    tokens.set_ylim(bottom=0)
    tokens.legend(loc="best")
    tokens.grid(alpha=0.3)
    figure.autofmt_xdate()
    figure.savefig(path, format="png")
