"""report.md and plots/*.png for a run directory, rewritten after every iteration.

The report opens with a plain summary (what ran, what changed from M_0 to M_n, what not to
over-read), then defines every number where it appears. Extensions add their own summary
lines and section; control arms (run.controls) are read from run_dir/controls/<arm>.
"""
from __future__ import annotations

import math
from pathlib import Path

from engine.selfalign.measures import read_eval
from engine.selfalign.records import atomic_write_text, read_jsonl
from engine.selfalign.run_directory import RunDirectory
from engine.selfalign.settings import IsheepConfig

IFEVAL_KEYS = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc",
               "inst_level_loose_acc", "win_rate")
STAGE_ORDER = ("prompts", "responses", "assessed", "train_data", "model", "eval")


def _iterations(run: RunDirectory) -> list[int]:
    return [i for i in sorted(run.all_counts()) if i > 0 and run.stage_done(i, "model")]


def _assessed(run: RunDirectory, it: int) -> list[dict]:
    path = run.path(it, "assessed.jsonl")
    return read_jsonl(path) if path.is_file() else []


def arm_results(cfg: IsheepConfig, run: RunDirectory, key: str) -> dict[str, dict[int, dict]]:
    """eval.json[key] by arm ("main", then each control) and iteration (0 = M_0)."""
    arms = {"main": run}
    for name in cfg.run.controls:
        path = run.root / "controls" / name
        if (path / "manifest.json").is_file():
            arms[name] = RunDirectory(path, is_writer=False)
    out = {}
    for name, arm in arms.items():
        its = [0] + _iterations(arm)
        evals = {it: read_eval(arm, it) for it in its}
        out[name] = {it: ev[key] for it, ev in evals.items() if key in ev}
    return out


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _display(path: str) -> str:
    """A path as the reader would type it: relative to the current directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _proportion_se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n else float("nan")


def summary(cfg: IsheepConfig, run: RunDirectory, iters: list[int], counts: dict) -> list[str]:
    """Three plain lines: what ran; what changed from M_0 to M_n; what not to over-read."""
    n = iters[-1] if iters else 0
    total_kept = sum(counts[i].get("train_data", {}).get("examples", 0) for i in iters)
    ran = (f"**What ran:** {n} of {cfg.run.iterations} iteration(s) of I-SHEEP on "
           f"`{_display(cfg.run.model)}` (profile {cfg.run.profile}); {total_kept} self-made training "
           f"pairs kept in all; judge {cfg.assessment.judge}, keep scores > {cfg.assessment.threshold}"
           + (f"; control arms: {', '.join(cfg.run.controls)}" if cfg.run.controls else "") + ".")
    changes = []
    for ext in cfg.extensions:
        changes += ext.summary_lines(arm_results(cfg, run, ext.name))
    base, last = read_eval(run, 0).get("ifeval"), read_eval(run, n).get("ifeval") if n else None
    if base and last:
        p0, p1 = base["prompt_level_strict_acc"], last["prompt_level_strict_acc"]
        k = base.get("num_prompts") or cfg.eval.max_prompts or 0
        se = f" (± {_fmt(_proportion_se(p1, k))} each)" if k else ""
        changes.append(f"IFEval prompt-level strict accuracy {_fmt(p0)} -> {_fmt(p1)}{se}.")
    if not changes:
        changes.append("No measure ran on the models (eval and extensions are off).")
    caveats = []
    for i in iters:
        r = counts[i].get("responses", {})
        if r.get("answers") and r.get("truncated", 0) > r["answers"] / 2:
            caveats.append(f"iteration {i}: {r['truncated']} of {r['answers']} answers hit the "
                           "token limit")
        a = counts[i].get("assessed", {})
        if a.get("unparsed_pairs"):
            caveats.append(f"iteration {i}: {a['unparsed_pairs']} of {a['pairs']} pairs had no "
                           "parsable score and were dropped")
        m = counts[i].get("model", {})
        if m and not m.get("trained", True):
            caveats.append(f"iteration {i}: too few pairs kept, the model was not trained")
    last_ifeval = read_eval(run, n).get("ifeval", {}) if n else {}
    if last_ifeval.get("judge_n") and last_ifeval.get("judge_ties") == last_ifeval["judge_n"]:
        caveats.append(f"all {last_ifeval['judge_n']} pairwise judgements of M_{n} were ties")
    if not caveats:
        caveats.append("nothing flagged (no truncation majority, unparsed scores or skipped training)")
    return [ran, "", "**What changed:** " + " ".join(changes), "",
            "**Do not over-read:** " + "; ".join(caveats) + ".", ""]


def write_report(cfg: IsheepConfig, run: RunDirectory) -> Path:
    plots = run.root / "plots"
    plots.mkdir(exist_ok=True)
    iters = _iterations(run)
    counts = run.all_counts()
    lines = [f"# I-SHEEP run `{cfg.run.name}`", ""] + summary(cfg, run, iters, counts)
    lines += [f"Settings: profile {cfg.run.profile}; base model `{_display(cfg.run.model)}`; judge "
              f"{cfg.assessment.judge} ({cfg.assessment.judge_format}, {cfg.assessment.mode}); level "
              f"{cfg.assessment.level}, keep scores strictly above {cfg.assessment.threshold} (set in "
              f"{_display(getattr(cfg, '_sources', {}).get('assessment.threshold', 'the defaults'))}); "
              f"training {cfg.training.method} from {cfg.training.start_from} on {cfg.training.data} "
              f"data. All settings: `config.toml`.", ""]
    lines += _funnel_table(iters, counts)
    lines += _scoring_table(iters, counts)
    lines += _training_table(iters, counts)
    lines += _ifeval_table(run, iters)
    lines += _harness_table(cfg, run, iters)
    for ext in cfg.extensions:
        lines += ext.report_section(arm_results(cfg, run, ext.name), plots)
    lines += _time_table(run)
    images = _plot(cfg, run, iters, counts, plots)
    if images:
        lines += ["## Plots", ""] + [f"![{name}](plots/{name})" for name in images] + [""]
    path = run.root / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def _funnel_table(iters, counts) -> list[str]:
    lines = ["## Data through every filter", "",
             "Each column counts what survives the step before it: items parsed from the model's "
             "task lists; prompts dropped by the heuristic filters (and extensions' filters) or as "
             "too similar (ROUGE-L); novel prompts beyond `synthesis.num_prompts` (over cap, "
             "unused); prompts kept; answers (prompts x `response.n`); answers passing the rule "
             "filters; pairs the judge kept; pairs removed by the per-prompt cap; training examples.",
             "",
             "| iteration | parsed | dropped by filters | dropped as similar | over cap | prompts kept "
             "| answers | answers kept | pairs kept by judge | over prompt cap | train examples |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for it in iters:
        c = counts[it]
        p, r, a, t = (c.get(k, {}) for k in ("prompts", "responses", "assessed", "train_data"))
        drops = dict(p.get("dropped", {}))
        similar = drops.pop("similar", 0)
        lines.append(f"| {it} | {p.get('parsed', '')} | {sum(drops.values())} | {similar} "
                     f"| {p.get('over_cap', '')} | {p.get('kept', '')} | {r.get('answers', r.get('prompts', ''))} "
                     f"| {r.get('kept', '')} | {a.get('kept', '')} | {t.get('over_prompt_cap', '')} "
                     f"| {t.get('examples', '')} |")
    lines.append("")
    for it in iters:
        for stage, c in counts[it].items():
            if isinstance(c, dict) and c.get("dropped"):
                lines.append(f"- iteration {it}, {stage} drops: " +
                             ", ".join(f"{k} {v}" for k, v in sorted(c["dropped"].items())))
    return lines + [""]


def _scoring_table(iters, counts) -> list[str]:
    compare = [(it, counts[it]["assessed"]) for it in iters if "kept_logprob" in counts[it].get("assessed", {})]
    if not compare:
        return []
    lines = ["## Sampled-and-parsed versus log-prob scoring", "",
             "| iteration | pairs | kept (sampled) | kept (log-prob) | decisions agree | unparsed scores |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {it} | {c['pairs']} | {c['kept']} | {c['kept_logprob']} | {c['agree']} "
              f"| {c.get('unparsed', 0)} |" for it, c in compare]
    return lines + [""]


def _training_table(iters, counts) -> list[str]:
    lines = ["## Training", "", "| iteration | examples | trained | start | steps | first loss | final loss |",
             "|---|---|---|---|---|---|---|"]
    for it in iters:
        m = counts[it].get("model", {})
        lines.append(f"| {it} | {m.get('examples', '')} | {m.get('trained', '')} "
                     f"| {Path(m.get('start', '')).name if m.get('start') else ''} | {m.get('steps', '')} "
                     f"| {_fmt(m.get('first_loss'))} | {_fmt(m.get('final_loss'))} |")
    return lines + [""]


def _ifeval_table(run, iters) -> list[str]:
    evals = {it: read_eval(run, it).get("ifeval") for it in [0] + iters}
    evals = {k: v for k, v in evals.items() if v}
    if not evals:
        return []
    lines = ["## Evaluation", "", "Accuracies are shares of our IFEval-style prompts whose verifiable "
             "instructions the greedy answer follows (prompt level: all of them; instruction level: "
             "each); the win rate is M_i against M_{i-1}, judged in both orders by M_0, ties half, "
             "± its standard error.", "",
             "| model | " + " | ".join(IFEVAL_KEYS) + " |", "|---" * (len(IFEVAL_KEYS) + 1) + "|"]
    for it, m in evals.items():
        cells = [_fmt(m.get(k)) + (f" ± {_fmt(m['win_rate_se'])}" if k == "win_rate" and "win_rate_se" in m
                                   else "") for k in IFEVAL_KEYS]
        lines.append(f"| M_{it} | " + " | ".join(cells) + " |")
    return lines + [""]


def harness_metrics(result: dict) -> dict[str, tuple[float, float | None]]:
    """{"task metric": (value, stderr)} from one harness stage's eval.json part."""
    out = {}
    for task, metrics in result.get("results", {}).items():
        for key, value in metrics.items():
            if key == "alias" or "_stderr" in key or not isinstance(value, (int, float)):
                continue
            name, _, filt = key.partition(",")
            stderr = metrics.get(f"{name}_stderr,{filt}")
            out[f"{task} {name}"] = (value, stderr if isinstance(stderr, (int, float)) else None)
    return out


def _harness_table(cfg, run, iters) -> list[str]:
    if not cfg.eval.harness_tasks:
        return []
    rows = {}
    for it in [0] + iters:
        ev = read_eval(run, it)
        merged = {}
        for task in cfg.eval.harness_tasks:
            merged.update(harness_metrics(ev.get(f"harness.{task}", {})))
        if merged:
            rows[it] = merged
    if not rows:
        return []
    cols = sorted({c for r in rows.values() for c in r})
    lines = ["## Benchmarks (lm-evaluation-harness)", "",
             "Each cell is the harness's own metric for the task on M_i (engine backend `sheep`), "
             "± the harness's standard error.", "",
             "| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for it, r in rows.items():
        cells = [(_fmt(r[c][0]) + (f" ± {_fmt(r[c][1])}" if r[c][1] is not None else "")) if c in r else ""
                 for c in cols]
        lines.append(f"| M_{it} | " + " | ".join(cells) + " |")
    return lines + [""]


def _time_table(run) -> list[str]:
    seconds = run.stage_seconds()
    present = {s for it in seconds for s in seconds[it]}
    names = [s for s in STAGE_ORDER if s in present] + sorted(present - set(STAGE_ORDER))
    lines = ["## Wall time per stage (seconds)", "",
             "| iteration | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for it in sorted(seconds):
        lines.append(f"| {it} | " + " | ".join(_fmt(seconds[it].get(s), 1) for s in names) + " |")
    return lines + [""]


def _save_per_model(fig, ax, path: Path, title: str, ylabel: str) -> str:
    """Finish and save a plot whose x axis is the model M_0, M_1, ...; returns its file name."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("model M_i (0 = base model)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def _plot(cfg, run: RunDirectory, iters: list[int], counts: dict, out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    written = []
    markers = "osv^dP*X"
    if iters:   # funnel: how much survives each stage
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        stages = [("prompts", "parsed"), ("prompts", "kept"), ("responses", "kept"),
                  ("assessed", "kept"), ("train_data", "examples")]
        labels = ["parsed", "prompts kept", "answers kept", "pairs kept", "train examples"]
        for k, it in enumerate(iters):
            ax.plot(labels, [counts[it].get(s, {}).get(key, 0) for s, key in stages],
                    marker=markers[k % len(markers)], label=f"iteration {it}")
        ax.set_ylim(bottom=0)
        ax.set_ylabel("count")
        ax.set_title("Data through the filters")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "funnel.png", dpi=90)
        plt.close(fig)
        written.append("funnel.png")

    scored = {it: _assessed(run, it) for it in iters}
    kinds = [k for k in ("quality", "following") if any(
        k in r.get("scores", r.get("logprob_scores", {})) for recs in scored.values() for r in recs)]
    if kinds:
        fig, axes = plt.subplots(1, len(kinds), figsize=(4.5 * len(kinds), 3.4), sharey=True, squeeze=False)
        bins = [1 + x / 4 for x in range(0, 37)]       # quarter-point bins over 1..10
        for ax, kind in zip(axes[0], kinds):
            for it, recs in scored.items():
                vals = [r.get("scores", r.get("logprob_scores", {})).get(kind) for r in recs]
                vals = [v for v in vals if v is not None]
                if vals:
                    ax.hist(vals, bins=bins, alpha=0.5, label=f"iteration {it}")
            ax.axvline(cfg.assessment.threshold, color="black", linestyle="--",
                       label=f"threshold {cfg.assessment.threshold}")
            ax.set_title(f"{kind} scores")
            ax.set_xlabel("score (kept: strictly above the threshold)")
            ax.set_ylabel("pairs")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "scores.png", dpi=90)
        plt.close(fig)
        written.append("scores.png")

    losses = {it: counts[it].get("model", {}).get("losses") for it in iters}
    if any(losses.values()):
        fig, ax = plt.subplots(figsize=(6, 3.2))
        for k, (it, ls) in enumerate(losses.items()):
            if ls:
                ax.plot(range(1, len(ls) + 1), ls, marker=markers[k % len(markers)], markersize=3,
                        label=f"iteration {it}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss (mean per token)")
        ax.set_title("Fine-tuning loss")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "loss.png", dpi=90)
        plt.close(fig)
        written.append("loss.png")

    bench = {it: {} for it in [0] + iters}
    for it in bench:
        for task in cfg.eval.harness_tasks:
            bench[it].update(harness_metrics(read_eval(run, it).get(f"harness.{task}", {})))
    cols = sorted({c for r in bench.values() for c in r})
    if cols:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        for k, col in enumerate(cols):
            pts = [(it, *bench[it][col]) for it in sorted(bench) if col in bench[it]]
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] or 0 for p in pts],
                        marker=markers[k % len(markers)], capsize=3, label=col)
        written.append(_save_per_model(fig, ax, out / "harness.png", "lm-evaluation-harness benchmarks",
                                       "metric"))

    evals = {it: read_eval(run, it).get("ifeval") for it in [0] + iters}
    evals = {k: v for k, v in evals.items() if v}
    if evals:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        xs = sorted(evals)
        for k, key in enumerate(IFEVAL_KEYS):
            pts = [(x, evals[x].get(key)) for x in xs if evals[x].get(key) is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=markers[k % len(markers)], label=key)
        ax.set_ylim(0, 1)
        written.append(_save_per_model(fig, ax, out / "eval.png", "Evaluation", "share"))
    return written
