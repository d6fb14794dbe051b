"""report.md and plots/*.png for a run directory, rewritten after every iteration."""
from __future__ import annotations

import json
from pathlib import Path

from engine.selfalign.records import read_jsonl
from engine.selfalign.run_directory import RunDirectory
from engine.selfalign.settings import IsheepConfig

EVAL_KEYS = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc",
             "inst_level_loose_acc", "win_rate")


STAGE_ORDER = ("prompts", "responses", "assessed", "train_data", "model", "eval", "world")


def _world_section(world: dict) -> list[str]:
    """The toy world's checker verdicts: is M_i better, and did filtering pick right answers?"""
    lines = ["## Toy world: what the checker says", "",
             "Held-out accuracy is greedy answers to held-out tasks; judge accuracy is how often "
             "'score > threshold' matches the checker on one right and one wrong answer per task "
             "(AUC: P(score of a right answer > score of a wrong one)), with M_i judging; AUC on own "
             "pairs is the same for the iteration's judge on the answers it actually graded; kept / "
             "answered correct is the share of the iteration's kept training pairs / of all its "
             "answers that are right.", "",
             "| model | held-out accuracy | judge accuracy | judge AUC | AUC on own pairs "
             "| kept correct | answered correct | lift from filtering |",
             "|---|---|---|---|---|---|---|---|"]
    for it, w in world.items():
        data = w.get("data", {})
        kept, answered = data.get("kept", {}), data.get("answered", {})
        lines.append(f"| M_{it} | {_fmt(w['heldout'].get('overall'))} | {_fmt(w['judge'].get('accuracy'))} "
                     f"| {_fmt(w['judge'].get('auc'))} "
                     f"| {_fmt(data.get('judge_on_pairs', {}).get('auc'))} | {_fmt(kept.get('correct_share'))} "
                     f"| {_fmt(answered.get('correct_share'))} | {_fmt(data.get('lift'))} |")
    families = sorted({f for w in world.values() for f in w["heldout"] if f != "overall"})
    lines += ["", "Held-out accuracy per family:", "",
              "| model | " + " | ".join(families) + " |", "|---" * (len(families) + 1) + "|"]
    for it, w in world.items():
        lines.append(f"| M_{it} | " + " | ".join(_fmt(w["heldout"].get(f)) for f in families) + " |")
    return lines + [""]


def _iterations(run: RunDirectory) -> list[int]:
    return [i for i in sorted(run.all_counts()) if i > 0]


def _read_eval(run: RunDirectory, it: int) -> dict | None:
    path = run.root / "base_eval.json" if it == 0 else run.path(it, "eval.json")
    return json.loads(path.read_text()) if path.is_file() else None


def _assessed(run: RunDirectory, it: int) -> list[dict]:
    path = run.path(it, "assessed.jsonl")
    return read_jsonl(path) if path.is_file() else []


def write_report(cfg: IsheepConfig, run: RunDirectory) -> Path:
    plots = run.root / "plots"
    plots.mkdir(exist_ok=True)
    iters = _iterations(run)
    counts = run.all_counts()
    lines = [f"# I-SHEEP run `{cfg.run.name}`", ""]
    if cfg.run.random_model_note:
        lines += ["> **The model in this run is a tiny random model.** It writes noise, so its "
                  "filters were relaxed and its numbers say nothing about I-SHEEP; the run shows "
                  "that every stage works end to end.", ""]
    lines += [f"Base model: `{cfg.run.model or 'tiny random preset'}`; judge: {cfg.assessment.judge}; "
              f"assessment: {cfg.assessment.level} ({cfg.assessment.mode}), threshold > "
              f"{cfg.assessment.threshold}; training: {cfg.training.method} from "
              f"{cfg.training.start_from} on {cfg.training.data} data.", ""]

    lines += ["## Data through every filter", "",
              "| iteration | meta-prompts | parsed | dropped by filters | dropped as similar | prompts kept "
              "| answers kept | pairs kept by judge | train examples |",
              "|---|---|---|---|---|---|---|---|---|"]
    for it in iters:
        c = counts[it]
        p, r, a, t = (c.get(k, {}) for k in ("prompts", "responses", "assessed", "train_data"))
        drops = dict(p.get("dropped", {}))
        similar = drops.pop("similar", 0)
        lines.append(f"| {it} | {p.get('meta_prompts', '')} | {p.get('parsed', '')} | {sum(drops.values())} "
                     f"| {similar} | {p.get('kept', '')} | {r.get('kept', '')} | {a.get('kept', '')} "
                     f"| {t.get('examples', '')} |")
    lines.append("")
    for it in iters:
        for stage, c in counts[it].items():
            if c.get("dropped"):
                lines.append(f"- iteration {it}, {stage} drops: " +
                             ", ".join(f"{k} {v}" for k, v in sorted(c["dropped"].items())))
    lines.append("")

    compare = [(it, counts[it]["assessed"]) for it in iters
               if "kept_logprob" in counts[it].get("assessed", {})]
    if compare:
        lines += ["## Sampled-and-parsed versus log-prob scoring", "",
                  "| iteration | pairs | kept (sampled) | kept (log-prob) | decisions agree | unparsed scores |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {it} | {c['pairs']} | {c['kept']} | {c['kept_logprob']} | {c['agree']} "
                  f"| {c.get('unparsed', 0)} |" for it, c in compare]
        lines.append("")

    lines += ["## Training", "", "| iteration | examples | trained | steps | first loss | final loss |",
              "|---|---|---|---|---|---|"]
    for it in iters:
        m = counts[it].get("model", {})
        lines.append(f"| {it} | {m.get('examples', '')} | {m.get('trained', '')} | {m.get('steps', '')} "
                     f"| {_fmt(m.get('first_loss'))} | {_fmt(m.get('final_loss'))} |")
    lines.append("")

    evals = {it: _read_eval(run, it) for it in [0] + iters}
    evals = {k: v for k, v in evals.items() if v}
    if evals:
        lines += ["## Evaluation", "", "Iteration 0 is the base model M_0; the win rate is M_i "
                  "against M_{i-1}, judged in both orders by M_0.", "",
                  "| model | " + " | ".join(EVAL_KEYS) + " |", "|---" * (len(EVAL_KEYS) + 1) + "|"]
        for it, m in evals.items():
            cells = [_fmt(m.get(k)) + (f" ± {_fmt(m['win_rate_se'])}" if k == "win_rate" and "win_rate_se" in m
                                       else "") for k in EVAL_KEYS]
            lines.append(f"| M_{it} | " + " | ".join(cells) + " |")
        lines.append("")

    world = {it: counts.get(it, {}).get("world") for it in [0] + iters}
    world = {k: v for k, v in world.items() if v}
    if world:
        lines += _world_section(world)

    seconds = run.stage_seconds()
    lines += ["## Wall time per stage (seconds)", ""]
    present = {s for it in seconds for s in seconds[it]}
    stage_names = [s for s in STAGE_ORDER if s in present] + sorted(present - set(STAGE_ORDER))
    lines += ["| iteration | " + " | ".join(stage_names) + " |", "|---" * (len(stage_names) + 1) + "|"]
    for it in sorted(seconds):
        lines.append(f"| {it} | " + " | ".join(_fmt(seconds[it].get(s), 1) for s in stage_names) + " |")
    lines.append("")

    images = _plot(run, iters, counts, evals, plots)
    if images:
        lines += ["## Plots", ""] + [f"![{name}](plots/{name})" for name in images] + [""]
    path = run.root / "report.md"
    tmp = path.with_name("report.md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
    return path


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _plot(run: RunDirectory, iters: list[int], counts: dict, evals: dict, out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if iters:   # funnel: how much survives each stage
        fig, ax = plt.subplots(figsize=(6, 3.5))
        stages = [("prompts", "parsed"), ("prompts", "kept"), ("responses", "kept"), ("assessed", "kept")]
        labels = ["parsed", "prompts kept", "answers kept", "pairs kept"]
        for it in iters:
            ax.plot(labels, [counts[it].get(s, {}).get(k, 0) for s, k in stages], marker="o", label=f"iter {it}")
        ax.set_ylabel("count")
        ax.set_title("Data through the filters")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "funnel.png", dpi=90)
        plt.close(fig)
        written.append("funnel.png")

    scored = {it: _assessed(run, it) for it in iters}
    if any(scored.values()):
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharey=True)
        for ax, kind in zip(axes, ("quality", "following")):
            for it, recs in scored.items():
                vals = [r.get("scores", r.get("logprob_scores", {})).get(kind) for r in recs]
                vals = [v for v in vals if v is not None]
                if vals:
                    ax.hist(vals, bins=[x + 0.5 for x in range(0, 11)], alpha=0.5, label=f"iter {it}")
            ax.set_title(f"{kind} scores")
            ax.set_xlabel("score")
        if axes[0].get_legend_handles_labels()[0]:
            axes[0].legend()
        fig.tight_layout()
        fig.savefig(out / "scores.png", dpi=90)
        plt.close(fig)
        written.append("scores.png")

    losses = {it: counts[it].get("model", {}).get("losses") for it in iters}
    if any(losses.values()):
        fig, ax = plt.subplots(figsize=(6, 3.2))
        for it, ls in losses.items():
            if ls:
                ax.plot(range(1, len(ls) + 1), ls, label=f"iter {it}")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title("Fine-tuning loss")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "loss.png", dpi=90)
        plt.close(fig)
        written.append("loss.png")

    world = {it: counts.get(it, {}).get("world") for it in sorted(counts)}
    world = {k: v for k, v in world.items() if v}
    if world:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        xs = sorted(world)
        ax.plot(xs, [world[i]["heldout"].get("overall") for i in xs], marker="o", label="held-out accuracy")
        ax.plot(xs, [world[i]["judge"].get("accuracy") for i in xs], marker="s", label="judge accuracy")
        data_x = [i for i in xs if world[i].get("data")]
        if data_x:
            ax.plot(data_x, [world[i]["data"]["kept"].get("correct_share") for i in data_x], marker="^",
                    label="kept pairs correct")
            ax.plot(data_x, [world[i]["data"]["answered"].get("correct_share") for i in data_x], marker="v",
                    label="answered pairs correct")
            judged_x = [i for i in data_x if world[i]["data"].get("judge_on_pairs")]
            if judged_x:
                ax.plot(judged_x, [world[i]["data"]["judge_on_pairs"].get("auc") for i in judged_x],
                        marker="d", linestyle="--", label="judge AUC on its pairs")
        ax.set_xlabel("iteration (0 = base model)")
        ax.set_ylim(0, 1)
        ax.set_title("Toy world")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "world.png", dpi=90)
        plt.close(fig)
        written.append("world.png")

    if evals:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        xs = sorted(evals)
        for key in EVAL_KEYS:
            ys = [evals[i].get(key) for i in xs]
            if any(y is not None for y in ys):
                ax.plot([x for x, y in zip(xs, ys) if y is not None], [y for y in ys if y is not None],
                        marker="o", label=key)
        ax.set_xlabel("iteration (0 = base model)")
        ax.set_title("Evaluation")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "eval.png", dpi=90)
        plt.close(fig)
        written.append("eval.png")
    return written
