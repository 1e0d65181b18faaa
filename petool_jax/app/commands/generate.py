"""`petool generate`: one prompt through a model with the KV-cache generator.

Generate from an HF directory, a petool model directory or a training checkpoint
RUN_DIR/checkpoints/N. Greedy at temperature 0 (the default); stops on any of the model's end tokens
(config and generation_config eos ids, the tokenizer's eos token, the token its chat template closes
an assistant turn with).
"""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="generate text from a prompt",
                              description=__doc__)
    p.add_argument("--model", required=True,
                   help="HF directory, petool model directory or training checkpoint RUN_DIR/checkpoints/N")
    p.add_argument("--prompt", required=True)
    p.add_argument("--chat", action="store_true",
                   help="wrap the prompt as a user turn of the model's own chat template")
    p.add_argument("--system", default=None, help="system message (with --chat)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); must be >= 0")
    p.add_argument("--top-p", type=float, default=1.0, help="in (0, 1]; 1 = no nucleus cut (default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--json", action="store_true", help='print {"text", "token_ids"} (generated ids only)')
    p.set_defaults(func=run)


def encode_prompt(tokenizer, prompt: str, chat: bool, system: str | None = None) -> list[int]:
    if chat:
        from petool_jax.chat import ChatRenderer, single_turn_messages

        return ChatRenderer(tokenizer).prompt_ids(single_turn_messages(prompt, system))
    return tokenizer(prompt)["input_ids"]


def run(args) -> int:
    from petool_jax.errors import UserError
    from petool_jax.generation import generate_batch, load_model

    from eval.options import check_sampling

    if args.max_new_tokens < 1:
        raise UserError("--max-new-tokens must be >= 1")
    try:  # before the model loads: a bad value fails at once
        check_sampling(args.temperature, args.top_p)
    except ValueError as err:
        raise UserError(str(err)) from None
    bundle = load_model(args.model, dtype=args.dtype)
    ids = encode_prompt(bundle.tokenizer, args.prompt, args.chat, args.system)
    [out] = generate_batch(bundle, [ids], max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                           top_p=args.top_p, seed=args.seed, batch_size=1, progress=False)
    text = bundle.tokenizer.decode(out, skip_special_tokens=True)
    if args.json:
        print(json.dumps({"text": text, "token_ids": out}))
    else:
        print(text)
    return 0
