"""The world's part of the loop report: a plain summary, one plot, and the tables.

results[arm][iteration] is eval.json["world"] of that arm ("main" and any controls): what
WorldExtension.measure_model returned, and from iteration 1 on, under "data", what
measure_iteration returned. Iteration 0 (M_0) may be missing from a control: every arm
starts from the main arm's M_0.
"""

from __future__ import annotations

import math
from pathlib import Path

MAIN = "main"


def _series(results: dict, arm: str) -> dict[int, dict]:
    series = dict(results.get(arm, {}))
    if 0 not in series and 0 in results.get(MAIN, {}):
        series[0] = results[MAIN][0]
    return dict(sorted(series.items()))


def _acc(entry: dict, group: str) -> dict | None:
    return entry.get("heldout", {}).get(group)


def _fmt(a: dict | None) -> str:
    if not a or a.get("accuracy") is None:
        return "-"
    return f"{a['accuracy']:.3f} ± {a['stderr']:.3f}"


def _share(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def summary_lines(results: dict[str, dict[int, dict]]) -> list[str]:
    """Plain words: did held-out accuracy rise in the judged loop, by how much, against what
    noise; where the controls ended; whether the judge beat the base rate."""
    main = _series(results, MAIN)
    if 0 not in main or len(main) < 2:
        return ["World: not enough iterations measured to compare M_0 with a later model."]
    last = max(main)
    lines = []
    for group, words in (("practised", "targets the loop could practise"),
                         ("unseen", "targets kept out of synthesis")):
        a0, a1 = _acc(main[0], group), _acc(main[last], group)
        if not a0 or not a1 or a0["accuracy"] is None:
            continue
        diff = a1["accuracy"] - a0["accuracy"]
        se = math.sqrt(a0["stderr"] ** 2 + a1["stderr"] ** 2)
        verdict = ("rose" if diff > 2 * se else "fell" if diff < -2 * se
                   else "did not change beyond its noise")
        lines.append(f"World held-out accuracy on {words} (untrained phrasing, n={a1['n']}) "
                     f"{verdict}: M_0 {_fmt(a0)} -> M_{last} {_fmt(a1)} "
                     f"({diff:+.3f}, ± {se:.3f} combined stderr).")
    for arm in sorted(a for a in results if a != MAIN):
        series = _series(results, arm)
        end = max(series)
        lines.append(f"Control {arm}: practised-target accuracy M_{end} {_fmt(_acc(series[end], 'practised'))} "
                     f"(judged loop M_{last} {_fmt(_acc(main[last], 'practised'))}).")
    judged = [(i, e["data"]["judge"]) for i, e in main.items() if "data" in e]
    if judged:
        ok = all(j["precision"] is not None and j["base_rate"] is not None
                 and j["precision"] >= 2 * j["base_rate"] for _, j in judged)
        pieces = ", ".join(f"M_{i - 1}'s pairs {_share(j['precision'])} vs base rate "
                           f"{_share(j['base_rate'])}" for i, j in judged)
        lines.append(f"Judge precision on its own pairs: {pieces} "
                     f"({'at least' if ok else 'NOT always'} twice the base rate).")
    return lines


def plot_heldout(results: dict, path: Path) -> Path:
    """Practised-target held-out accuracy per arm across iterations, ± 1 stderr bars; the
    main arm's kept-out targets dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    curves = [(arm, "practised", "-") for arm in results] + [(MAIN, "unseen", "--")]
    for k, (arm, group, style) in enumerate(curves):
        pts = [(i, _acc(e, group)) for i, e in _series(results, arm).items() if _acc(e, group)]
        if not pts:
            continue
        ax.errorbar([i for i, _ in pts], [a["accuracy"] for _, a in pts],
                    yerr=[a["stderr"] for _, a in pts], linestyle=style, marker="osv^dP"[k % 6], capsize=3,
                    label=f"{arm}: {'practised' if group == 'practised' else 'kept-out'} targets")
    ax.set_xticks(sorted({i for arm in results for i in _series(results, arm)}))
    ax.set_xlabel("iteration (0 = M_0)")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("Toy world: held-out accuracy per arm (± binomial stderr)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report_section(results: dict[str, dict[int, dict]], plots_dir: Path) -> list[str]:
    """Markdown: the plot, held-out accuracy per arm, the family table, and per iteration
    the answered vs kept correctness and the judge's precision and recall."""
    plot = plot_heldout(results, Path(plots_dir) / "world_heldout.png")
    lines = ["## Toy world (engine/world)", "",
             "Held-out accuracy: greedy answers to the heldout phrasing, never trained for "
             "practised or kept-out targets; ± one binomial standard error.", "",
             f"![held-out accuracy per arm]({Path(plots_dir).name}/{plot.name})", "",
             "| arm | model | practised (heldout phrasing) | kept-out | taught | practised (practice phrasing) | forward facts |",
             "|---|---|---|---|---|---|---|"]
    for arm in results:
        for i, e in _series(results, arm).items():
            lines.append(f"| {arm} | M_{i} | {_fmt(_acc(e, 'practised'))} | {_fmt(_acc(e, 'unseen'))} "
                         f"| {_fmt(_acc(e, 'taught'))} | {_fmt(e.get('practised_practice_phrasing'))} "
                         f"| {_fmt(e.get('forward'))} |")
    main = _series(results, MAIN)
    families = sorted({f for e in main.values() for f in (_acc(e, "practised") or {}).get("per_family", {})})
    if families:
        lines += ["", "Per family, main arm (practised / kept-out targets, heldout phrasing):", "",
                  "| model | " + " | ".join(f"{f} practised | {f} kept-out" for f in families) + " |",
                  "|---|" + "---|---|" * len(families)]
        for i, e in main.items():
            cells = [_fmt((_acc(e, g) or {}).get("per_family", {}).get(f))
                     for f in families for g in ("practised", "unseen")]
            lines.append(f"| M_{i} | " + " | ".join(cells) + " |")
    lines += ["", "The iteration's own pairs, checked by the world's checker (answered: every "
              "pair the judge saw; kept: the training pairs after the threshold and the per-prompt cap):", "",
              "| arm | iteration | answered | answered right | kept | kept right | judge precision | judge recall | base rate | unparsed | prompts by family |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm in results:
        for i, e in _series(results, arm).items():
            d = e.get("data")
            if not d:
                continue
            j = d["judge"]
            lines.append(f"| {arm} | {i} | {d['answered']['n']} | {_fmt(d['answered'])} | {d['kept']['n']} "
                         f"| {_fmt(d['kept'])} | {_share(j['precision'])} | {_share(j['recall'])} "
                         f"| {_share(j['base_rate'])} | {j['unparsed']} "
                         f"| {', '.join(f'{k} {v}' for k, v in d['prompts'].items())} |")
    return lines + [""]
