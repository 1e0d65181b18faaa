"""`--model PATH`: a JAX model (HF or petool directory) through petool_jax.generation.

Prompts go through the model tokenizer's own chat template; one that exceeds
--max-prompt-tokens is cut as --truncation says (eval/truncation.py: by default its OLDEST
history entries, then its longest candidate descriptions, never the query; `authors`: the
authors' right cut). Tasks are sorted by prompt length before batching so each batch pads
little; every batch is written as soon as it is generated, while the next one computes.
"""

from __future__ import annotations

from eval import truncation
from eval.options import RunOptions
from eval.predictions import prediction_row
from eval.runners.task import EvalTask
from eval.scoring import TRUNCATION_FLAGS
from petool_jax.chat import ChatRenderer
from petool_jax.host_memory import release_freed_host_memory


# Tokenizer classes that are tokenizer.json as it is: loaded without AutoTokenizer, whose
# import pulls in torch (measured on a 128k-vocabulary model: 7.1 -> 2.8 CPU-s, 450 -> 220 MB).
PLAIN_TOKENIZER_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")


def load_tokenizer_lean(model_dir):
    """The model's tokenizer; a plain tokenizer.json one without importing torch."""
    import json
    import pathlib

    from petool_jax.tokenizer import load_tokenizer

    model_dir = pathlib.Path(model_dir)
    config_path = model_dir / "tokenizer_config.json"
    try:
        tokenizer_class = json.loads(config_path.read_text(encoding="utf-8")).get("tokenizer_class")
    except (OSError, ValueError, AttributeError):
        tokenizer_class = None  # load_tokenizer reports what is wrong
    if tokenizer_class in PLAIN_TOKENIZER_CLASSES and (model_dir / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(str(model_dir))
    return load_tokenizer(model_dir)


class JaxModelRunner:
    def __init__(self, path: str, options: RunOptions):
        from petool_jax import generation

        self.name = path
        self.options = options
        self._generation = generation
        self.bundle = generation.load_model(path, dtype=options.dtype, with_tokenizer=False)
        self.bundle.tokenizer = self.tokenizer = load_tokenizer_lean(self.bundle.path)

    def _encode(self, messages: list[dict]) -> list[int]:
        return ChatRenderer(self.tokenizer).prompt_ids(messages)

    def plan(self, tasks: list[EvalTask], batch_size: int):
        o = self.options
        for task in tasks:
            ids, facts = truncation.prompt_ids(o.truncation, self.tokenizer, self._encode, task.entry, task.setting,
                                               o.max_prompt_tokens, o.prompt_format)
            task.prepared = {"ids": ids, "n_dropped": facts["n_dropped"], "truncation": facts}
        # generation's own grouping (shortest first, power-of-two rows): generate_batch then
        # runs each batch as one, without padding rows
        from petool_jax.generation import plan_batches

        groups = plan_batches([len(t.prepared["ids"]) for t in tasks], batch_size)
        release_freed_host_memory()  # the tokenizer's work, before generation's peak (host_memory.py)
        return [[tasks[i] for i in group] for group in groups]

    def run_batch(self, batch: list[EvalTask]) -> list[dict]:
        return next(self.run_batches([batch]))

    def run_batches(self, batches: list[list[EvalTask]]):
        """Prediction rows batch by batch; generation runs one batch ahead (see
        generation.generate_batches), so a batch is written while the next one computes."""
        o = self.options
        generated = self._generation.generate_batches(
            self.bundle, ([t.prepared["ids"] for t in batch] for batch in batches), max_new_tokens=o.max_new_tokens,
            temperature=o.temperature, top_p=o.top_p, seed=o.seed, batch_size=o.batch_size)
        for batch, ids_per_task in zip(batches, generated):
            yield [self._row(t, ids) for t, ids in zip(batch, ids_per_task)]

    def _row(self, task: EvalTask, ids: list[int]) -> dict:
        row = prediction_row(task.entry["entry_id"], task.setting, self.tokenizer.decode(ids, skip_special_tokens=True),
                             prompt_tokens=len(task.prepared["ids"]), n_dropped=task.prepared["n_dropped"])
        facts = task.prepared.get("truncation") or {}
        row.update({k: facts[k] for k in TRUNCATION_FLAGS if k in facts}, shortened=bool(facts.get("cut")))
        return row
