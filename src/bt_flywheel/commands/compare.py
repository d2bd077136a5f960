"""`flywheel compare BASELINE CANDIDATE --target SCORE [--guard SCORE ...]`: paired statistics."""

from __future__ import annotations

import argparse
from typing import Any

from bt_flywheel.commands._options import add_output_args, add_settings_args, settings_from_args, wants_json
from bt_flywheel.core.output import print_json, print_table
from bt_flywheel.core.redact import redact
from bt_flywheel.verify.objectives import OBJECTIVES


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "compare", help="compare two experiments with paired statistics (verify & decide)",
        description="Pair two experiments by dataset row id, average trials per row, and report the "
        "effect, CI, p, verdict per score (DESIGN.md §8): paired t (cluster-robust with --cluster), exact "
        "McNemar for binary scores, a paired bootstrap cross-check, TOST, non-inferiority for guards, Holm "
        "across scores, Benjamini-Hochberg across slices, and the rows needed when inconclusive. Reported "
        "beside the verdict (not voting): McNemar odds ratio, Wilcoxon, Hodges-Lehmann, Cohen's d_z, Cliff's "
        "delta, a permutation test and the minimum detectable effect. Reads the "
        "local store, or Braintrust experiments through btql with --remote (automatic when "
        "BRAINTRUST_API_KEY is set).")
    parser.add_argument("baseline", nargs="?", help="baseline experiment name or id")
    parser.add_argument("candidate", nargs="?", help="candidate experiment name or id")
    parser.add_argument("--target", help="the score to improve (or --optimize)")
    parser.add_argument("--optimize", choices=sorted(OBJECTIVES),
                        help="facet/classifier objective: fp (target negative_specificity, guard positive_recall), "
                             "fn (target positive_recall, guard negative_specificity), balanced (target "
                             "binary_decision_match, guard both); --target/--guard override or add")
    parser.add_argument("--guard", action="append", default=[], metavar="SCORE",
                        help="a score that must not get worse (non-inferiority); repeatable")
    parser.add_argument("--min-effect", type=float, default=0.0,
                        help="improved only if the CI lower bound exceeds this (default 0)")
    parser.add_argument("--margin", type=float, default=0.02,
                        help="equivalence / non-inferiority margin (default 0.02)")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    parser.add_argument("--slice", dest="slice_key", metavar="KEY",
                        help="also compare per value of this row path, e.g. metadata.facet (BH-corrected)")
    parser.add_argument("--cluster", dest="cluster_key", metavar="KEY",
                        help="row path of a cluster id (e.g. metadata.conversation_id): cluster-robust SE")
    parser.add_argument("--threshold", type=float, default=0.25,
                        help="a row regressed if its score dropped by more than this (default 0.25)")
    parser.add_argument("--resamples", type=int, default=10_000,
                        help="bootstrap resamples for the cross-check (default 10000; 0 skips it)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap and permutation seed (default 0)")
    parser.add_argument("--guard-metric", action="append", default=[], metavar="METRIC[:MAX_INCREASE]",
                        help="a span metric that must not rise: tokens, cost, latency or duration, with the "
                        "allowed increase as a fraction (default 0.1 = +10%%); repeatable")
    parser.add_argument("--price", action="append", default=[], metavar="MODEL=INPUT,OUTPUT",
                        help="USD per million input and output tokens, for cost from tokens (adds to or overrides "
                        "the built-in table); repeatable")
    parser.add_argument("--pool", action="store_true",
                        help="pool each score's effect across the --slice values (DerSimonian-Laird random effects)")
    parser.add_argument("--pool-from", action="append", default=[], metavar="FILE",
                        help="instead of comparing, pool each score's effect across these comparison files "
                        "(the same change on other seeds or runs; DerSimonian-Laird); repeatable")
    parser.add_argument("--out", metavar="FILE", help="also write the JSON result to FILE (atomically)")
    add_output_args(parser, json_help="print JSON instead of tables")
    add_settings_args(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bt_flywheel.backends.base import backend_from_settings
    from bt_flywheel.core.errors import InputError
    from bt_flywheel.core.fileio import atomic_write_json
    from bt_flywheel.verify.compare import compare_experiments
    from bt_flywheel.verify.metrics import parse_metric_guard, parse_prices
    from bt_flywheel.verify.objectives import target_and_guards

    if args.pool_from:
        return _pool_files(args)
    if not (args.baseline and args.candidate):
        raise InputError("compare: give BASELINE and CANDIDATE experiments (or --pool-from FILE ...)")
    metric_guards = [parse_metric_guard(g) for g in args.guard_metric]
    prices = parse_prices(args.price)
    settings = settings_from_args(args)
    target, guards = target_and_guards(args.optimize, args.target, args.guard)
    comparison = compare_experiments(
        backend_from_settings(settings), args.baseline, args.candidate, target=target, guards=guards,
        min_effect=args.min_effect, margin=args.margin, alpha=args.alpha, threshold=args.threshold,
        slice_key=args.slice_key, cluster_key=args.cluster_key, n_resamples=args.resamples, seed=args.seed,
        project=settings.project, metric_guards=metric_guards, prices=prices, pool=args.pool)
    doc = comparison.to_dict()
    if args.out:
        atomic_write_json(args.out, doc)
    if wants_json(args):
        print_json(doc)
    else:
        print_report(doc)
    return 0


def _pool_files(args: argparse.Namespace) -> int:
    from bt_flywheel.core.fileio import atomic_write_json, read_json_file
    from bt_flywheel.verify.compare import pool_comparisons

    doc = pool_comparisons([(f, read_json_file(f)) for f in args.pool_from], alpha=args.alpha)
    if args.out:
        atomic_write_json(args.out, doc)
    if wants_json(args):
        print_json(doc)
    else:
        print_pooled(doc["pooled"], alpha=doc["alpha"])
    return 0


def _num(value: Any, digits: int = 4, *, sign: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _p(value: Any) -> str:
    if value is None:
        return "-"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def _ci(ci: list[Any]) -> str:
    return f"[{_num(ci[0])}, {_num(ci[1])}]" if ci and ci[0] is not None else "-"


def _say(text: str = "") -> None:
    print(redact(text))


def print_report(doc: dict[str, Any]) -> None:
    exps = doc["experiments"]
    for side in ("baseline", "candidate"):
        e = exps[side]
        _say(f"{side}: {e['name']} ({e['id']}) - {e['rows']} rows, {e['root_rows']} row-trials")
    level = int(round((1 - doc["alpha"]) * 100))
    _print_scores(doc, level)
    keep = "keep the candidate" if doc["keep"] else "do not keep the candidate"
    guards = "" if doc["guards_ok"] is None else f"; guards {'ok' if doc['guards_ok'] else 'NOT ok'}"
    _say(f"status: {doc['status']} - target {doc['target']} {doc['target_verdict']}{guards}; {keep}")
    _say(f"multiplicity: {doc['multiplicity']['method']} ({doc['multiplicity']['applies_to']})")
    regs = doc["regressions"]
    _say()
    _say(f"regressions (score dropped by more than {_num(doc['regression_threshold'])}): {len(regs)}")
    if regs:
        print_table([{"score": r["score"], "row": r["row_id"], "baseline": _num(r["baseline"]),
                      "candidate": _num(r["candidate"]), "drop": _num(r["drop"])} for r in regs[:20]])
        if len(regs) > 20:
            _say(f"... {len(regs) - 20} more (see --json)")
    slices = doc.get("slices")
    if slices:
        _say()
        _say(f"slices by {slices['key']} (Benjamini-Hochberg across {slices['tests']} slice tests; "
             f"q < {doc['alpha']:g} is significant):")
        print_table([{"value": r["value"], "score": r["score"], "n": r["n"], "effect": _num(r["effect"], sign=True),
                      f"{level}% CI": _ci(r["ci"]), "p": _p(r["p"]), "q (BH)": _p(r["q"]),
                      "significant": ("yes, " + r["direction"]) if r["significant"] else "no"}
                     for r in slices["results"]])
    if doc.get("pooled"):
        _say()
        _say(f"pooled across the slices of {slices['key'] if slices else '?'} (DerSimonian-Laird random effects):")
        print_pooled(doc["pooled"], alpha=doc["alpha"])
    notes = list(dict.fromkeys([*doc["notes"], *(n for s in doc["scores"] for n in s["notes"])]))
    if notes:
        _say()
        for note in notes:
            _say(f"note: {note}")


def _print_scores(doc: dict[str, Any], level: int) -> None:
    """The verdict table, the metric guards' ratios, the cross-checks and the reported figures."""
    print_table([{"score": s["name"], "role": s["role"], "n": s["n"], "baseline mean": _num(s["baseline_mean"]),
                  "candidate mean": _num(s["candidate_mean"]), "effect": _num(s["effect"], sign=True),
                  f"{level}% CI": _ci(s["ci"]), "p": _p(s["p"]), "method": s["method"], "verdict": s["verdict"]}
                 for s in doc["scores"]])
    metric_rows = [{"metric": s["name"], "unit": s["metric"]["unit"], "ratio": _num(s["metric"]["ratio"], 3),
                    f"{level}% CI (Fieller)": _ci(s["metric"]["ratio_ci"]),
                    "allowed": f"+{s['metric']['max_increase']:.0%}", "verdict": s["verdict"]}
                   for s in doc["scores"] if s.get("metric")]
    if metric_rows:
        _say("metric guards (candidate/baseline ratio of mean per row):")
        print_table(metric_rows)
    checks = []
    for s in doc["scores"]:
        boot, mcn, tost, power = s["bootstrap"], s["mcnemar"], s["tost"], s["power"]
        checks.append({
            "score": s["name"],
            "bootstrap CI": _ci(boot["ci"]) if boot else "-",
            "McNemar p (lost/gained)": f"{_p(mcn['p'])} ({mcn['lost']}/{mcn['gained']})" if mcn else "-",
            f"TOST p (±{_num(doc['margin'])})": _p(tost["p"]) if tost else "-",
            "p (Holm)": _p(s["p_holm"]),
            "rows for 80% power": (power["required_n"] if power and power["required_n"] is not None else "-"),
        })
    _say("cross-checks:")
    print_table(checks)
    _say("reported beside the verdict (not voting; see references/stats.md):")
    print_table([_reported_row(s) for s in doc["scores"]])


def _odds(mcn: dict[str, Any]) -> str:
    """gained/lost with its CI; an open bound (no row lost) is ∞ (null in the JSON)."""
    if not (mcn.get("gained") or mcn.get("lost")):
        return "-"
    low, high = mcn.get("odds_ratio_ci") or [None, None]

    def shown(v: Any) -> str:
        return "∞" if v is None else _num(v, 2)

    return f"{shown(mcn.get('odds_ratio'))} [{shown(low)}, {shown(high)}]"


def _reported_row(s: dict[str, Any]) -> dict[str, Any]:
    r = s.get("reported") or {}
    mcn = s.get("mcnemar") or {}
    hl, dz, cliff, perm, wil, mde = (r.get(k) or {} for k in ("hodges_lehmann", "cohens_dz", "cliffs_delta",
                                                               "permutation", "wilcoxon", "mde"))
    return {"score": s["name"],
            "McNemar OR": _odds(mcn) if mcn else "-",
            "Wilcoxon p": _p(wil.get("p")),
            "Hodges-Lehmann": f"{_num(hl.get('estimate'), sign=True)} {_ci(hl.get('ci') or [])}" if hl else "-",
            "d_z": f"{_num(dz.get('estimate'), 2, sign=True)} {_ci(dz.get('ci') or [])}" if dz else "-",
            "Cliff's δ": _num(cliff.get("estimate"), 3, sign=True) if cliff else "-",
            "permutation p": f"{_p(perm.get('p'))}{' (exact)' if perm.get('exact') else ''}" if perm else "-",
            "MDE": _num(mde.get("effect")) if mde else "-"}


def print_pooled(pooled: list[dict[str, Any]], *, alpha: float) -> None:
    level = int(round((1 - alpha) * 100))
    print_table([{"score": p["score"], "k": p["k"], "pooled effect": _num(p["effect"], sign=True),
                  f"{level}% CI": _ci(p["ci"]), "tau²": _num(p["tau2"], 6), "I²": _num(p["i2"], 3),
                  "Q p": _p(p["q_p"])} for p in pooled])
