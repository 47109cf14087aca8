"""Plain-transformers code that reproduces rewardkit's reward for one saved model (`snippet`).

Generated from the model's `Layout`: how to load it (full weights, or an adapter on its base), how
to render chat messages, the encoder's sentence-pair call or the decoder's token assembly with
rewardkit's truncation, and the readout (the logit, a regression model's weighted sum of its
ratings, or a generative model's log-odds of yes over no after its question). The card tests run the
generated code and compare its rewards with `RewardModel`'s.
"""

from __future__ import annotations

import os

from rewardkit.card.layout import Layout, tokens_comment
from rewardkit.model.gguf import is_gguf


def _load_lines(layout: Layout, model_path: str) -> list[str]:
    auto = "AutoModelForCausalLM" if layout.causal_lm else "AutoModelForSequenceClassification"
    lines = ["import torch",
             f"from transformers import {auto}, AutoTokenizer",
             *(["from peft import PeftModel"] if layout.adapter else []), "",
             f"MODEL = {model_path!r}  # this directory (or its Hub id once uploaded)",
             "tok = AutoTokenizer.from_pretrained(MODEL)"]
    if layout.adapter:
        head = (f"num_labels={len(layout.regression.attributes)}, ignore_mismatched_sizes=True)  # the adapter "
                "holds the trained head" if layout.regression else ")" if layout.causal_lm else "num_labels=1)")
        where = repr(layout.adapter_base)
        if is_gguf(layout.adapter_base):  # transformers dequantizes a GGUF base itself (the gguf package)
            folder, name = os.path.split(str(layout.adapter_base))
            where = f"{folder!r}, gguf_file={name!r}"
        lines += [f"base = {auto}.from_pretrained({where}{', ' if head != ')' else ''}{head}",
                  "base.resize_token_embeddings(len(tok))  # rewardkit may have added a pad token",
                  "base.config.pad_token_id = tok.pad_token_id",
                  "model = PeftModel.from_pretrained(base, MODEL).eval()"]
    else:
        lines.append(f"model = {auto}.from_pretrained(MODEL).eval()")
    return lines


def _render_lines(layout: Layout) -> list[str]:
    """Chat messages -> (prompt text, response text), as `Encoder.render` does with a chat template; for
    a model trained on chat messages, plain strings first become the messages it was trained on."""
    chat = layout.encoder.chat
    template = bool(getattr(layout.tokenizer, "chat_template", None))
    if not template and chat is None:
        return []
    lines = ["", ""]
    if chat is not None:
        lines += [f"ENDS = {list(chat.ends)!r}  # a generated answer's end tokens, cut back to its content", "", "",
                  "def render(prompt, response):  # strings become the chat messages this model was trained on",
                  "    p = prompt if isinstance(prompt, list) else [{'role': 'user', 'content': prompt}]",
                  "    if isinstance(response, str):",
                  "        while any(response.endswith(e) for e in ENDS):",
                  "            response = response[:-len(next(e for e in ENDS if response.endswith(e)))]",
                  "        response = [{'role': 'assistant', 'content': response}]",
                  "    r = response"]
    else:
        lines += ["def render(prompt, response):  # chat messages -> texts, as rewardkit renders them",
                  "    p = prompt if isinstance(prompt, list) else [{'role': 'user', 'content': prompt}]",
                  "    r = response if isinstance(response, list) else [{'role': 'assistant', 'content': response}]"]
    if not template:  # no chat template: rewardkit's plain one, hh-rlhf style
        return lines + [
            "    names = {'user': 'Human', 'assistant': 'Assistant', 'system': 'System'}",
            "    text = lambda ms: ''.join(f\"\\n\\n{names.get(m['role'], m['role'].capitalize())}: {m['content']}\" for m in ms)",
            "    head = text(p) + '\\n\\nAssistant:'",
            "    return head, text(p + r)[len(head):]"]
    return lines + [
        "    head = tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True)",
        "    full = tok.apply_chat_template(p + r, tokenize=False)",
        "    n = next((i for i, (a, b) in enumerate(zip(head, full)) if a != b), min(len(head), len(full)))",
        "    return full[:n], full[n:]"]


def _render_call(layout: Layout) -> list[str]:
    """The first lines of ``reward``: render chat messages (always, for a model trained on them)."""
    if not _render_lines(layout):
        return []
    if layout.encoder.chat is not None:
        return ["    prompt, response = render(prompt, response)"]
    return ["    if not (isinstance(prompt, str) and isinstance(response, str)):",
            "        prompt, response = render(prompt, response)"]


def _constant_lines(layout: Layout) -> list[str]:
    """A regression model's combination weights (and, for an adapter, the scaling its head learned in), or
    a generative model's answer tokens."""
    if layout.verdict is not None:
        yes, no = layout.verdict.answers
        return [f"YES, NO = {layout.verdict.answer_ids[0]}, {layout.verdict.answer_ids[1]}  # {yes!r}, {no!r}"]
    reg = layout.regression
    if reg is None:
        return []
    lines = [f"WEIGHTS = {reg.weights!r}  # per output: {', '.join(reg.attributes)}"]
    if not reg.folded:
        lines.append(f"OFFSET, SCALE = {reg.scaling.offset!r}, {reg.scaling.scale!r}  # outputs -> rating units")
    return lines


def _readout_lines(layout: Layout, call: str, why: str) -> list[str]:
    """The last lines of ``reward``: the logit, a regression model's weighted sum of its ratings, or a
    generative model's log-odds of its answers."""
    if layout.verdict is not None:
        return ["    with torch.no_grad():  # the next token after the question (TAIL)",
                f"        logp = {call}.logits[0, -1].float().log_softmax(-1)",
                "    return (logp[YES] - logp[NO]).item()  # log P(yes) - log P(no)"]
    reg = layout.regression
    if reg is None:
        return [f"    with torch.no_grad():{why}", f"        return {call}.logits[0, 0].item()"]
    lines = [f"    with torch.no_grad():{why}",
             f"        values = {call}.logits[0].tolist()  # one value per rated attribute"]
    if not reg.folded:
        lines.append("    values = [o + s * y for y, o, s in zip(values, OFFSET, SCALE)]  # ratings, original units")
    return lines + ["    return sum(w * v for w, v in zip(WEIGHTS, values))  # the combined reward"]


def _encoder_lines(layout: Layout) -> list[str]:
    return ["tok.truncation_side = 'left'  # rewardkit drops the oldest prompt tokens, never the response's",
            "", "",
            "def reward(prompt, response) -> float:",
            *_render_call(layout),
            f"    enc = tok(prompt, response, truncation='only_first', max_length={layout.max_length}, "
            "return_tensors='pt')",
            *_readout_lines(layout, "model(**enc)", "")]


def _decoder_lines(layout: Layout) -> list[str]:
    enc, tok = layout.encoder, layout.tokenizer
    return [f"MAX_LENGTH, HEAD, TAIL = {layout.max_length}, {enc.head}, {enc.tail}"
            f"  # HEAD: {tokens_comment(tok, enc.head)}; TAIL: {tokens_comment(tok, enc.tail)}",
            "", "",
            "def reward(prompt, response) -> float:",
            *_render_call(layout),
            "    p = tok(prompt, add_special_tokens=False)['input_ids']  # prompt and response tokenized apart",
            "    r = tok(response, add_special_tokens=False)['input_ids']",
            "    head = [] if HEAD and p[:len(HEAD)] == HEAD else HEAD  # a chat template may emit BOS itself",
            "    budget = MAX_LENGTH - len(head) - len(TAIL)",
            "    if len(p) + len(r) > budget:  # drop the oldest prompt tokens; an over-long response keeps its start",
            "        keep = budget - len(r) if len(r) <= budget else min(len(p), budget // 8)",
            "        p, r = (p[len(p) - keep:] if keep else []), r[:budget - keep]",
            "    ids = torch.tensor([head + p + r + TAIL])",
            *_readout_lines(layout, "model(input_ids=ids)", "  # the reward is read at the final token (EOS)")]


def _prm_snippet(layout: Layout, model_path: str) -> str:
    """A process reward model: every step's reward, as `RewardModel.score_steps` computes it."""
    prm, tok = layout.meta["prm"], layout.tokenizer
    tokens = prm.get("readout") == "tokens"
    auto = "AutoModelForCausalLM" if tokens else "AutoModelForTokenClassification"
    read = (["        logp = logits[pos].float().log_softmax(-1)",
             f"        value = logp[{prm['token_ids'][0]}] - logp[{prm['token_ids'][1]}]  # log P({prm['tokens'][0]!r}) - "
             f"log P({prm['tokens'][1]!r})"] if tokens else ["        value = logits[pos, 0].float()"])
    lines = ["import torch", f"from transformers import {auto}, AutoTokenizer", "",
             f"MODEL = {model_path!r}  # this directory (or its Hub id once uploaded)",
             "tok = AutoTokenizer.from_pretrained(MODEL)", f"model = {auto}.from_pretrained(MODEL).eval()",
             f"MAX_LENGTH, HEAD, SEP = {layout.max_length}, {layout.encoder.head}, {prm['separator_id']}"
             f"  # SEP: {tokens_comment(tok, [prm['separator_id']])!s}, read after every step", "", "",
             "def step_rewards(prompt, steps):  # P(step is right) for every step",
             "    p = tok(prompt, add_special_tokens=False)['input_ids']",
             "    parts = [tok(s, add_special_tokens=False)['input_ids'] + [SEP] for s in steps]",
             "    budget, keep = MAX_LENGTH - len(HEAD), len(parts)  # too long: the oldest steps go, then prompt tokens",
             "    while keep and sum(map(len, parts[len(parts) - keep:])) > budget - min(len(p), budget // 4):",
             "        keep -= 1",
             "    kept = parts[len(parts) - max(keep, 1):]",
             "    p = p[max(0, len(p) - (budget - sum(map(len, kept)))):]",
             "    ids, positions = HEAD + p, []",
             "    for part in kept:",
             "        ids += part",
             "        positions.append(len(ids) - 1)",
             "    with torch.no_grad():",
             "        logits = model(input_ids=torch.tensor([ids])).logits[0]",
             "    out = [float('nan')] * (len(parts) - len(kept))  # steps left out to fit MAX_LENGTH",
             "    for pos in positions:", *read,
             "        out.append(torch.sigmoid(value).item())",
             "    return out", "", "",
             f"print(step_rewards('start 3 add 4', ['3 + 4 = 7']))  # the solution's reward: the {prm.get('aggregate', 'min')} "
             "of these"]
    return "\n".join(lines) + "\n"


def _gating_lines(layout: Layout) -> list[str]:
    """A gated model: the prompt's last state weights the attributes the head reads at the EOS."""
    g = layout.meta["gating"]
    return ["from safetensors.torch import load_file", "",
            f"gate = load_file(f'{{MODEL}}/{g['file']}')  # the gate over {', '.join(g['attributes'])}", "", "",
            "def reward(prompt, response) -> float:  # scale * sum(weight(prompt) * attribute(response))",
            "    p = tok(prompt, add_special_tokens=False)['input_ids']",
            "    r = tok(response, add_special_tokens=False)['input_ids']",
            "    head = [] if HEAD and p[:len(HEAD)] == HEAD else HEAD",
            "    budget = MAX_LENGTH - len(head) - len(TAIL)",
            "    if len(p) + len(r) > budget:",
            "        keep = budget - len(r) if len(r) <= budget else min(len(p), budget // 8)",
            "        p, r = (p[len(p) - keep:] if keep else []), r[:budget - keep]",
            "    ids = torch.tensor([head + p + r + TAIL])",
            "    with torch.no_grad():",
            "        states = getattr(model, model.base_model_prefix)(input_ids=ids).last_hidden_state[0]",
            "        attributes = model.score(states[-1]).float()  # the response's ratings, one per attribute",
            "        x = states[len(head) + len(p) - 1].float()  # the prompt's last state, standardised",
            "        x = (x - gate['center']) / gate['spread']",
            "        h = x @ gate['mlp.0.weight'].T + gate['mlp.0.bias']",
            "        weights = torch.softmax(torch.relu(h) @ gate['mlp.2.weight'].T + gate['mlp.2.bias'], -1)",
            "        return (gate['log_scale'].exp() * (weights * attributes).sum()).item()"]


def _critique_lines(layout: Layout) -> list[str]:
    """A critique model: generate the critique greedily after the context, then read the head at the EOS that
    closes it (`rewardkit.model.critique`)."""
    c = layout.meta["critique"]
    body = _decoder_lines(layout)
    start = next(i for i, line in enumerate(body) if line.startswith("    p = tok("))
    end = next(i for i, line in enumerate(body) if line.startswith("    ids = torch.tensor("))
    return ["from safetensors.torch import load_file", "",
            f"reward_head = load_file(f'{{MODEL}}/{c['head_file']}')  # read after the critique",
            f"MAX_CRITIQUE, EOS = {c['max_tokens']}, {c['eos_id']}  # TAIL: the critique's cue", "", "",
            "def critique_and_reward(prompt, response):  # (the critique the model writes, the reward)",
            *_render_call(layout), *body[start:end], "    ids = head + p + r + TAIL",
            "    with torch.no_grad():  # greedy, as rewardkit writes critiques",
            "        out = model.generate(torch.tensor([ids]), max_new_tokens=MAX_CRITIQUE, do_sample=False,",
            "                             eos_token_id=EOS, pad_token_id=tok.pad_token_id)",
            "        critique = out[0, len(ids):].tolist()",
            "        critique = critique[:critique.index(EOS)] if EOS in critique else critique",
            "        full = torch.tensor([ids + critique + [EOS]])  # one EOS closes every critique",
            "        state = getattr(model, model.base_model_prefix)(input_ids=full).last_hidden_state[0, -1].float()",
            "        reward = (state @ reward_head['weight'].T + reward_head['bias']).item()",
            "    return tok.decode(critique).strip(), reward"]


def snippet(layout: Layout, model_path: str) -> str | None:
    """Plain-transformers code that reproduces rewardkit's reward for this model, or None (also for an
    SFT model, which has no reward)."""
    if layout.meta.get("prm"):
        return _prm_snippet(layout, model_path)
    if layout.meta.get("objective") == "critique":
        if layout.adapter:
            return None
        lines = _load_lines(layout, model_path) + _decoder_lines(layout)[:1] + _render_lines(layout)
        lines += ["", ""] + _critique_lines(layout)
        return "\n".join(lines + ["", "", "print(critique_and_reward('How do I boil an egg?', "
                                  "'Simmer it for eight minutes.'))"]) + "\n"
    if layout.meta.get("gating") and layout.decoder and not layout.adapter:
        lines = _load_lines(layout, model_path) + _decoder_lines(layout)[:1] + _gating_lines(layout)
        return "\n".join(lines + ["", "", "print(reward('How do I boil an egg?', 'Simmer it for eight minutes.'))"]) + "\n"
    if layout.sft or (not layout.decoder and not layout.pair_call_ok):
        return None
    body = _decoder_lines(layout) if layout.decoder else _encoder_lines(layout)
    # the body's first line sets constants; then come the functions, two blank lines apart
    lines = _load_lines(layout, model_path) + body[:1] + _constant_lines(layout) + _render_lines(layout) + body[1:]
    if layout.meta.get("objective") == "judge":
        return "\n".join(lines + _judge_lines()) + "\n"
    lines += ["", "", "print(reward('How do I boil an egg?', 'Simmer it for eight minutes.'))"]
    return "\n".join(lines) + "\n"


def _judge_lines() -> list[str]:
    """A pairwise judge: its verdict on (a, b), and both orders averaged (`rewardkit.model.judge`)."""
    return ["", "",
            "def judge(prompt, a, b):  # log P(A) - log P(B): above 0, response A is judged the better",
            "    return reward(prompt, f'\\n\\nResponse A:\\n{a}\\n\\nResponse B:\\n{b}')", "", "",
            "def compare(prompt, a, b):  # P(a beats b): both orders averaged, which cancels a position bias",
            "    forward, backward = judge(prompt, a, b), judge(prompt, b, a)",
            "    return (torch.sigmoid(torch.tensor(forward)).item() + 1 - torch.sigmoid(torch.tensor(backward)).item()) / 2",
            "", "", "print(compare('How do I boil an egg?', 'Simmer it for eight minutes.', 'Eggs come from hens.'))"]
