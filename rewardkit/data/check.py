"""`rewardkit data check`: what is in a preference file, before spending compute on it."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any, Callable

from rewardkit.data.records import Comparison, Loaded, preference_pairs, text_length


def _describe(xs: list[int]) -> dict[str, float]:
    if not xs:
        return {}
    s = sorted(xs)
    return {"min": s[0], "mean": round(statistics.fmean(s), 1), "median": statistics.median(s),
            "p95": s[min(len(s) - 1, int(0.95 * len(s)))], "max": s[-1]}


def data_report(loaded: Loaded, source: str) -> dict[str, Any]:
    """Counts, character-length statistics, duplicates, chosen-longer rate, pairs per prompt,
    benchmark rows, records without a preference and invalid records.

    Pairs are the ones each comparison states (`preference_pairs`), the ones `rewardkit data convert`
    writes: a ranking's every i < j, but a benchmark row's chosen-vs-rejected pairs only (two chosen
    answers of a best-of-N row are not a preference).
    """
    comps = loaded.comparisons
    sizes = Counter(len(c.responses) for c in comps)
    prompts = Counter(c.prompt_key() for c in comps)
    stated = [preference_pairs(c) for c in comps]
    prompt_pairs: Counter[str] = Counter()
    for c, ij in zip(comps, stated):
        prompt_pairs[c.prompt_key()] += len(ij)
    keys = Counter((c.prompt_key(), tuple(str(r) for r in c.responses), c.bench and c.bench.label) for c in comps)
    pairs = [(c.responses[i], c.responses[j]) for c, ij in zip(comps, stated) for i, j in ij]
    longer = sum(text_length(a) > text_length(b) for a, b in pairs)
    return {
        "file": source,
        "records": loaded.records,
        "comparisons": len(comps),
        "pairs": len(pairs),
        "responses_per_comparison": dict(sorted(sizes.items())),
        "prompts": len(prompts),
        "comparisons_per_prompt": _describe(list(prompts.values())),
        "pairs_per_prompt": _describe(list(prompt_pairs.values())),
        "prompt_chars": _describe([text_length(c.prompt) for c in comps]),
        "response_chars": _describe([text_length(r) for c in comps for r in c.responses]),
        "duplicate_comparisons": sum(n - 1 for n in keys.values() if n > 1),
        "chosen_longer_rate": longer / len(pairs) if pairs else None,
        "with_margin": sum(c.margin is not None for c in comps),
        "subsets": dict(Counter(c.subset for c in comps if c.subset is not None)),
        "benchmarks": benchmark_counts(comps),
        "no_preference": len(loaded.dropped),
        "no_preference_records": [str(p) for p in loaded.dropped[:20]],
        "notes": list(loaded.notes),
        "invalid": len(loaded.problems),
        "invalid_records": [str(p) for p in loaded.problems[:20]],
    }


def benchmark_counts(comps: list[Comparison]) -> dict[str, dict[str, Any]]:
    """Per benchmark kind (`BenchmarkRow.kind`): its rows, rows per subset, rows per count of chosen +
    rejected responses, and for JudgeBench rows per label (how often response_A is the better one)."""
    rows: Counter[str] = Counter()
    counts: dict[str, dict[str, Counter[str]]] = {}
    for c in comps:
        b = c.bench
        if b is None:
            continue
        rows[b.kind] += 1
        kind = counts.setdefault(b.kind, {"subsets": Counter(), "chosen+rejected": Counter()})
        if c.subset is not None:
            kind["subsets"][c.subset] += 1
        kind["chosen+rejected"][f"{b.chosen}+{len(c.responses) - b.chosen}"] += 1
        if b.label is not None:
            kind.setdefault("labels", Counter())[b.label] += 1
    return {name: {"rows": rows[name], **{key: dict(sorted(v.items())) for key, v in counts[name].items()}}
            for name in sorted(rows)}


def print_report(r: dict[str, Any]) -> None:
    print(f"{r['file']}: {r['records']} records -> {r['comparisons']} comparisons "
          f"({r['pairs']} pairs), {r['prompts']} distinct prompts")
    print(f"  responses per comparison   {r['responses_per_comparison']}")
    for kind, b in r["benchmarks"].items():
        labels = f", labels {b['labels']}" if "labels" in b else ""
        print(f"  {kind + ' rows':<27}{b['rows']} (chosen+rejected per row {b['chosen+rejected']}{labels})")
        if b["subsets"] and b["subsets"] != r["subsets"]:  # a file of one benchmark: the subsets line below
            print(f"    subsets                  {b['subsets']}")
    for note in r["notes"]:
        print(f"  {note}")
    print(f"  comparisons per prompt     {r['comparisons_per_prompt']}")
    print(f"  pairs per prompt           {r['pairs_per_prompt']}")
    print(f"  prompt length (chars)      {r['prompt_chars']}")
    print(f"  response length (chars)    {r['response_chars']}")
    print(f"  duplicate comparisons      {r['duplicate_comparisons']}")
    rate = r["chosen_longer_rate"]
    print(f"  chosen is longer           {'n/a' if rate is None else f'{rate:.1%}'} of pairs")
    print(f"  records with margin        {r['with_margin']}")
    if r["subsets"]:
        print(f"  subsets                    {r['subsets']}")
    print(f"  without a preference       {r['no_preference']}{' (left out):' if r['no_preference'] else ''}")
    for line in r["no_preference_records"]:
        print(f"    {line}")
    print(f"  invalid records            {r['invalid']}")
    for line in r["invalid_records"]:
        print(f"    {line}")


def check_data(cfg: Any) -> tuple[dict[str, Any], Callable[[dict[str, Any]], None]]:
    """`rewardkit data check` of ``cfg.file``: (the report, its printer), for preference data or, when the
    file holds step-labelled solutions, the process-reward view (`rewardkit.data.steps.step_report`)."""
    from rewardkit.data.loading import load_comparisons
    from rewardkit.data.steps import is_step_file, load_step_solutions, print_step_report, step_report

    if is_step_file(cfg.file):
        return step_report(load_step_solutions(cfg.file, "auto", True, cfg.neutral), cfg.file), print_step_report
    return data_report(load_comparisons(cfg.file, cfg.format, skip_invalid=True, ratings=cfg), cfg.file), print_report
