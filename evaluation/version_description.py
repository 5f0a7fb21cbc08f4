"""What a registered version is, in its registry description: written by adsrel at registration (the
model) and rewritten by the gate (its test quality and the decision), so an analyst reads on the
registry page what a version is and why the gate decided as it did, without opening artifacts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def model_lines(meta: Mapping[str, Any]) -> list[str]:
    """Method, backbone, tasks, training data and teacher of a plain artifact's metadata."""
    base = meta.get("base_model") or {}
    blocks = f" (its first {base['layers']} blocks)" if base.get("layers") else ""
    tasks = [t["name"] for t in sorted(meta.get("tasks") or [], key=lambda t: t["id"])]
    data = meta.get("data") or {}
    rows = f", {data['train_rows']:,} train rows" if data.get("train_rows") else ""
    # plain text first: the registry's version list shows the description's start, markdown unrendered
    lines = [f"{meta.get('method')} on {base.get('reference')}{blocks}, {len(tasks)} segments: "
             + ", ".join(tasks) + ".",
             f"Trained on data `{str(data.get('manifest_digest'))[:19]}`{rows}, step {meta.get('step')}."]
    teacher = meta.get("teacher")
    if teacher:
        lines.append(f"Distilled from version {teacher.get('version') or '-'} (`{teacher['digest'][:19]}`).")
    return lines


def quality_line(report: Mapping[str, Any]) -> str:
    """The test macro ROC AUC with its interval, and each segment's, from an evaluation report."""
    data, macro = report["data"], report["macro"].get("roc_auc")
    per_task = ", ".join(f"{t} {m['roc_auc']:.3f}" for t, m in report["tasks"].items() if m.get("roc_auc") is not None)
    low, high = report["macro"].get("roc_auc_ci_low"), report["macro"].get("roc_auc_ci_high")
    shown = f"{macro:.4f}" if macro is not None else "undefined"
    if macro is not None and low is not None:
        shown += f" [{low:.4f}, {high:.4f}] (95% bootstrap)"
    return (f"Test macro ROC AUC {shown} on {data['split']} of `{data['manifest_digest'][:19]}` "
            f"({data['rows']:,} rows; per segment: {per_task}).")


def gate_line(status: str, reasons: list[str], champion: str | None) -> str:
    first = reasons[0] if reasons else "no reason given"
    return f"Gate: **{status}** against champion {champion or 'none'}: {first}"


def describe(meta: Mapping[str, Any], report: Mapping[str, Any] | None = None,
             gate: tuple[str, list[str], str | None] | None = None) -> str:
    """The description of a plain version: the model, then its test quality and the gate's decision
    when there are."""
    lines = model_lines(meta)
    if report is not None:
        lines.append(quality_line(report))
    if gate is not None:
        lines.append(gate_line(*gate))
    return "\n\n".join(lines) + "\n"
