"""`rewardkit data check`: what is in a preference file, before spending compute on it."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from rewardkit.data.records import Loaded, text_length


def _describe(xs: list[int]) -> dict[str, float]:
    if not xs:
        return {}
    s = sorted(xs)
    return {"min": s[0], "mean": round(statistics.fmean(s), 1), "median": statistics.median(s),
            "p95": s[min(len(s) - 1, int(0.95 * len(s)))], "max": s[-1]}


def data_report(loaded: Loaded, source: str) -> dict[str, Any]:
    """Counts, character-length statistics, duplicates, chosen-longer rate, pairs per prompt,
    records without a preference and invalid records."""
    comps = loaded.comparisons
    sizes = Counter(len(c.responses) for c in comps)
    prompts = Counter(c.prompt_key() for c in comps)
    prompt_pairs: Counter[str] = Counter()
    for c in comps:
        prompt_pairs[c.prompt_key()] += len(c.responses) * (len(c.responses) - 1) // 2
    keys = Counter((c.prompt_key(), tuple(str(r) for r in c.responses)) for c in comps)
    pairs = [(c.responses[i], c.responses[j]) for c in comps
             for i in range(len(c.responses)) for j in range(i + 1, len(c.responses))]
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
        "no_preference": len(loaded.dropped),
        "no_preference_records": [str(p) for p in loaded.dropped[:20]],
        "notes": list(loaded.notes),
        "invalid": len(loaded.problems),
        "invalid_records": [str(p) for p in loaded.problems[:20]],
    }


def print_report(r: dict[str, Any]) -> None:
    print(f"{r['file']}: {r['records']} records -> {r['comparisons']} comparisons "
          f"({r['pairs']} pairs), {r['prompts']} distinct prompts")
    print(f"  responses per comparison   {r['responses_per_comparison']}")
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
