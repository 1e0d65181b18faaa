"""`--model openai:NAME`: the same prompts through an OpenAI-compatible chat API.

All transport concerns (bounded concurrency, retries with backoff and jitter on 429, 5xx,
timeouts and malformed bodies, the request cache) live in petool_jax.llm_client. A request
that still fails becomes a row with response None and ok False: it counts as wrong and,
being recorded, is not sent again on a rerun (pass --retry-failed for that).
The full prompt is sent (no tokenizer here to shorten it), as the authors did.

`--protocol authors` repeats the authors' API calls (run_experiment.py interact_openai):
no temperature and no max_tokens in the request (the API's defaults), their 10 s timeout
and the openai client's default 2 retries (set by eval.cli), and the reply NFKC-normalised
(unicodedata.normalize("NFKC", ...)) before it is scored. Failed calls are recorded as ever;
the report's answered-only denominator is theirs (eval.scoring).
"""

from __future__ import annotations

import unicodedata

from eval.options import RunOptions
from eval.predictions import prediction_row
from eval.runners.task import EvalTask, chunks
from petool_jax import petoolbench as pb


class OpenAIRunner:
    def __init__(self, model_name: str, options: RunOptions):
        from petool_jax.llm_client import LLMClient

        self.name = f"openai:{model_name}"
        self.model_name = model_name
        self.options = options
        self.client = LLMClient(
            base_url=options.base_url,
            api_key=options.api_key,
            cache_dir=options.cache_dir,
            max_concurrency=options.concurrency,
            max_retries=options.max_retries,
            timeout_s=options.timeout_s,
            backoff_base_s=options.backoff_base_s,
            backoff_max_s=options.backoff_max_s,
        )
        self.authors = options.protocol == "authors"
        if self.authors:
            self.params: dict = {}  # their request: the API's own sampling defaults, no length limit
        else:
            self.params = {"max_tokens": options.max_new_tokens, "temperature": options.temperature}
            if options.top_p < 1.0:
                self.params["top_p"] = options.top_p

    def plan(self, tasks: list[EvalTask], batch_size: int):
        # A batch keeps every concurrent slot busy; its rows are written when it completes.
        return chunks(tasks, max(batch_size, 4 * self.options.concurrency))

    def run_batch(self, batch: list[EvalTask]) -> list[dict]:
        requests = [(pb.build_messages(t.entry, t.setting, 0, self.options.prompt_format), self.model_name,
                     self.params) for t in batch]
        results = self.client.chat_many(requests, progress=False)
        rows = []
        for task, result in zip(batch, results):
            text = result.text if result.ok else None
            if text is not None and self.authors:
                text = unicodedata.normalize("NFKC", text)
            rows.append(prediction_row(
                task.entry["entry_id"], task.setting,
                text,
                prompt_tokens=result.usage.get("prompt_tokens"),
                ok=result.ok,
                error=None if result.ok else result.error,
            ))
        return rows

    def stats(self) -> dict:
        return self.client.stats.as_dict()
