"""Every segment across the last versions, in one view: per segment, the test ROC AUC each of the last
N registered versions had in its latest evaluation (on the data it was evaluated on), the champion
marked. Logged by the gate at each promotion, so an analyst sees whether travel improved over the last
retrains without opening runs one by one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evaluation.tracking import MANIFEST_DIGEST_TAG, SPLIT_TAG, VERSION_TAG

LAST_VERSIONS = 6


def version_scores(client, experiment_id: str, last: int = LAST_VERSIONS) -> dict[str, dict[str, Any]]:
    """``{version: {"data": manifest digest, "split": ..., "roc_auc": {task: value}}}`` of the last
    ``last`` versions with an evaluation run (each version's latest), oldest first."""
    runs = client.search_runs([experiment_id], filter_string="tags.stage = 'evaluate'",
                              order_by=["attributes.start_time DESC"], max_results=1000)
    found: dict[str, dict[str, Any]] = {}
    for run in runs:
        version = run.data.tags.get(VERSION_TAG)
        if not version or version in found:
            continue
        aucs = {key.split("/")[1]: value for key, value in run.data.metrics.items()
                if key.startswith("eval/") and key.endswith("/roc_auc") and key.count("/") == 2}
        found[version] = {"data": run.data.tags.get(MANIFEST_DIGEST_TAG, ""), "split": run.data.tags.get(SPLIT_TAG),
                          "roc_auc": aucs}
    return {v: found[v] for v in sorted(found, key=int)[-last:]}


def segments(scores: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every segment any of the versions was evaluated on, sorted (not the macro or micro rows)."""
    return sorted({t for s in scores.values() for t in s["roc_auc"]} - {"macro", "micro"})


def history_table(scores: Mapping[str, Mapping[str, Any]], champion: str | None) -> str:
    """Markdown: a row per segment (macro last), a column per version (the champion starred), the data
    each was evaluated on under its column."""
    versions = list(scores)
    tasks = segments(scores) + ["macro"]
    head = ["segment", *(f"v{v}{' (champion)' if v == champion else ''}" for v in versions)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
             "| data | " + " | ".join(f"{scores[v]['split']} of `{scores[v]['data'][7:15]}`" for v in versions) + " |"]
    for task in tasks:
        cells = [f"{scores[v]['roc_auc'][task]:.4f}" if task in scores[v]["roc_auc"] else "-" for v in versions]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def history_figure(scores: Mapping[str, Mapping[str, Any]], champion: str | None):
    """A line per segment over the versions (x), the champion's column marked."""
    import matplotlib.pyplot as plt

    versions = list(scores)
    tasks = segments(scores)
    fig, ax = plt.subplots(figsize=(max(6.5, 1.0 * len(versions) + 4.5), 4.5))
    for task in [*tasks, "macro"]:
        ax.plot(range(len(versions)), [scores[v]["roc_auc"].get(task, float("nan")) for v in versions], marker="o",
                linewidth=3 if task == "macro" else 1.2, color="black" if task == "macro" else None, label=task)
    if champion in versions:
        ax.axvline(versions.index(champion), color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(versions)), [f"v{v}" + ("\nchampion" if v == champion else "") for v in versions])
    ax.set(ylabel="test ROC AUC (each version on the data it was evaluated on)",
           title="every segment across versions")
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the lines, not over them
    fig.tight_layout()
    return fig
