"""Writing a benchmark's result: JSON for machines, a markdown table for people."""

from __future__ import annotations

import json
from pathlib import Path


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:,.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write(result: dict, json_path: Path | None, markdown: str) -> None:
    """JSON at ``json_path`` and the markdown beside it (same stem, ``.md``)."""
    if json_path is None:
        return
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2))
    json_path.with_suffix(".md").write_text(markdown)
