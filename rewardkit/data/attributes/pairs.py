"""Preference pairs from the rows of a multi-attribute rating table (``--objective bt+regression``).

Answers of one prompt are compared on ``--pair-attribute`` (default ``combined``: the combined
reward of their ratings; or one attribute name) through the pairwise converter
`rewardkit.data.ratings.pairs_for`, with the same modes, thresholds and margins as a single-score
rating table. An answer lacking a value the pair score needs cannot be compared and is left out of
pairing (counted), while its other values still train the regression head.
"""

from __future__ import annotations

from typing import Sequence

from rewardkit.data.attributes.options import COMBINED
from rewardkit.data.attributes.table import RatedResponse
from rewardkit.data.ratings import Answer, RatedPrompt, RatingOptions, pairs_for
from rewardkit.data.records import Loaded, Problem, text_key
from rewardkit.errors import UsageError, flag


def combine(values: Sequence[float | None], weights: Sequence[float]) -> float | None:
    """``sum_k w_k * value_k`` over weighted attributes; None when a weighted value is missing."""
    total = 0.0
    for v, w in zip(values, weights):
        if w == 0:
            continue
        if v is None:
            return None
        total += w * v
    return total


def pair_score_weights(pair_attribute: str, attributes: Sequence[str], weights: Sequence[float]) -> list[float]:
    """The weights of the score answers are compared on: the combined weights, or one attribute's."""
    if pair_attribute == COMBINED:
        return list(weights)
    if pair_attribute not in attributes:
        raise UsageError(f"{flag('pair_attribute')}: no attribute {pair_attribute!r} "
                         f"(attributes are {', '.join(attributes)}, or 'combined')")
    return [1.0 if a == pair_attribute else 0.0 for a in attributes]


def group_for_pairs(records: Sequence[RatedResponse], pair_weights: Sequence[float]
                    ) -> tuple[list[RatedPrompt], int]:
    """Prompts with their answers scored by ``pair_weights`` (rows re-rating an answer are averaged,
    as in `rewardkit.data.ratings`); also how many rows lacked a value the score needs."""
    groups: dict[str, RatedPrompt] = {}
    unscored = 0
    for r in records:
        score = combine(r.values, pair_weights)
        if score is None:
            unscored += 1
            continue
        group = groups.setdefault(r.prompt_key(), RatedPrompt(r.prompt, r.where))
        same = next((a for a in group.answers if text_key(a.response) == text_key(r.response)), None)
        if same is None:
            group.answers.append(Answer(r.response, [score], r.where))
        else:
            same.scores.append(score)
    return list(groups.values()), unscored


def pairs_from_records(records: Sequence[RatedResponse], attributes: Sequence[str], weights: Sequence[float],
                       pair_attribute: str, ratings: RatingOptions) -> Loaded:
    """Preference pairs for ``bt+regression`` from the same rows (see module doc), via `pairs_for`.

    Call it on each side of a split separately (`split_records`): pairs never cross prompts, so the
    pairs of the training rows and of the held-out rows stay prompt-disjoint. ``ratings_mode`` must
    be best-worst or all-pairs; prompts that yield no pair are `dropped` with their reason.
    """
    if ratings.ratings_mode == "ranking":
        raise UsageError(f"{flag('ratings_mode')} ranking does not apply to --objective bt+regression "
                         "(use best-worst or all-pairs)")
    pw = pair_score_weights(pair_attribute, attributes, weights)
    groups, unscored = group_for_pairs(records, pw)
    out = Loaded(comparisons=[], records=len(records))
    for g in groups:
        comps, why = pairs_for(g, ratings)
        out.comparisons.extend(comps)
        if why is not None:
            out.dropped.append(Problem(g.where, why))
    note = (f"pairs from ratings on {pair_attribute}: {len(groups)} prompts -> {len(out.comparisons)} pairs "
            f"({ratings.describe()}); {len(out.dropped)} prompts gave none")
    if unscored:
        note += f"; {unscored} rows lack a value {pair_attribute!r} needs and were not paired"
    out.notes.append(note)
    return out


