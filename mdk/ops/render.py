"""How the operator commands show their results: rich tables and lines for people, JSON for ``--json``."""

from __future__ import annotations

import json
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table

from mdk.ops.results import ModelStatus, ShadowReport


class Result(Protocol):
    def line(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


def print_json(out: Console, data: Any) -> None:
    out.print_json(json.dumps(data, default=str))


def result(out: Console, found: Result, *, as_json: bool) -> None:
    """One command's result: its line, or its JSON."""
    if as_json:
        print_json(out, found.to_json())
    else:
        out.print(found.line(), highlight=False)


def status(out: Console, found: list[ModelStatus], *, as_json: bool) -> None:
    if as_json:
        print_json(out, [item.to_json() for item in found])
        return
    for item in found:
        title = f"{item.model} ({item.runtime}, model version {item.version})"
        if item.endpoint_status:
            title += f", endpoint {item.endpoint_status}"
        table = Table(title=title, title_justify="left")
        table.add_column(item.unit)
        table.add_column("traffic", justify="right")
        table.add_column("role")
        table.add_column(item.detail_column)
        for share in item.traffic:
            shown = "-" if share.weight is None else f"{100 * share.weight:.1f} %"
            table.add_row(share.name, shown, share.role, share.detail)
        out.print(table)
        if item.deployment:
            out.print(f"  in flight: {item.deployment}", highlight=False)
        if item.shadow:
            out.print(
                f"  shadow: version {item.shadow['candidate']} gets {100 * float(item.shadow['sample']):g} % "
                "of requests mirrored",
                highlight=False,
            )
        for alarm, state in item.alarms.items():
            colour = {"OK": "green", "ALARM": "red"}.get(state, "yellow")
            out.print(f"  alarm [{colour}]{state}[/{colour}] {alarm}", highlight=False)


def shadow_report(out: Console, report: ShadowReport, *, as_json: bool) -> None:
    if as_json:
        print_json(out, report.to_json())
        return
    table = Table(
        title=f"{report.model}: candidate {report.candidate} over {report.hours:g} h", title_justify="left"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in ShadowReport.MEASURES:
        value = getattr(report, key)
        table.add_row(key.replace("_", " "), "-" if value is None else f"{value:g}")
    out.print(table)
