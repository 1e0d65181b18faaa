"""SFT examples -> tokenized sequences with an assistant-only loss mask -> batches.

Sources: LLaMA-Factory SFT files (instruction, input, output) and PEToolBench entries in
the released test-file format (one example per entry and setting). The prompt is rendered
with the tokenizer's own chat template; the assistant mask is what the full conversation
adds after the generation prompt. Over-long examples lose their OLDEST history entries
(never the candidates, the query or the answer). Tokenization is cached with `datasets`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Any

import numpy as np

from petool_jax import petoolbench
from petool_jax.errors import UserError
from petool_jax.train.llama_factory import make_renderer
from petool_jax.train.records import read_records, require

LLAMAFACTORY_SFT_KEYS = ("instruction", "input", "output")


def format_call(call: dict) -> str:
    """The ground-truth tool call as the model should write it (one line of JSON)."""
    return json.dumps({"tool_name": call["tool_name"], "parameters": call["parameters"]}, ensure_ascii=False)


def detect_format(record: dict, declared: str) -> str:
    if declared != "auto":
        return declared
    if "api_call_ground_truth" in record:
        return "petoolbench"
    return "llamafactory"


def load_sft_examples(paths: list[str], settings: list[str], max_samples: int = 0,
                      declared_format: str = "auto") -> list[dict]:
    """[{"id", "instruction", "query", "answer"}] from every file, in file order."""
    examples: list[dict] = []
    for path in paths:
        records = read_records(path)
        if max_samples:
            records = records[:max_samples]
        for i, record in enumerate(records):
            fmt = detect_format(record, declared_format)
            if fmt == "llamafactory":
                require(record, LLAMAFACTORY_SFT_KEYS, path, i)
                examples.append({"id": f"{pathlib.Path(path).name}:{i}", "instruction": record["instruction"],
                                 "query": record["input"], "answer": record["output"]})
            elif fmt == "petoolbench":
                require(record, ("entry_id", "query", "api_call_ground_truth"), path, i)
                for setting in settings:
                    key = petoolbench.INSTRUCTION_KEYS[setting]
                    require(record, (key,), path, i)
                    examples.append({"id": f"{record['entry_id']}:{setting}", "instruction": record[key],
                                     "query": record["query"],
                                     "answer": format_call(record["api_call_ground_truth"])})
            else:
                raise UserError(f"data.format {fmt!r} is not auto, llamafactory or petoolbench")
    if not examples:
        raise UserError(f"no training examples in {paths}")
    return examples


def _ids(encoded) -> list[int]:
    if hasattr(encoded, "keys"):
        encoded = encoded["input_ids"]
    return list(encoded)


class ChatRenderer:
    """Renders (messages, answer) with the tokenizer's chat template."""

    def __init__(self, tokenizer):
        if not getattr(tokenizer, "chat_template", None):
            raise UserError("the tokenizer has no chat template")
        self.tokenizer = tokenizer

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        return _ids(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))

    def full_ids(self, messages: list[dict], answer: str) -> list[int]:
        conversation = messages + [{"role": "assistant", "content": answer}]
        return _ids(self.tokenizer.apply_chat_template(conversation, tokenize=True))

    def encode(self, messages: list[dict], answer: str) -> tuple[list[int], list[int]]:
        """(token ids, assistant mask) of the whole conversation."""
        prompt = self.prompt_ids(messages)
        full = self.full_ids(messages, answer)
        if full[:len(prompt)] != prompt or len(full) == len(prompt):
            raise UserError("the chat template does not render the generation prompt as a prefix of the "
                            "conversation; cannot derive the assistant mask")
        return full, [0] * len(prompt) + [1] * (len(full) - len(prompt))


def tokenize_example(renderer: ChatRenderer, example: dict, prompt_format: str, max_seq_len: int) -> dict:
    """input_ids, assistant_mask, n_dropped (history entries removed), fits."""
    entry = {petoolbench.INSTRUCTION_KEYS["p"]: example["instruction"], "query": example["query"]}

    def count(messages):
        return len(renderer.full_ids(messages, example["answer"]))

    messages, n_dropped = petoolbench.fit_messages(entry, "p", count, max_seq_len, prompt_format)
    ids, mask = renderer.encode(messages, example["answer"])
    return {"input_ids": ids, "assistant_mask": mask, "n_dropped": n_dropped, "fits": len(ids) <= max_seq_len}


def _fingerprint(paths, tokenizer, parts: dict) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(pathlib.Path(path).read_bytes())
    h.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    h.update(str(tokenizer.chat_template).encode())
    h.update(json.dumps(parts, sort_keys=True).encode())
    return h.hexdigest()[:24]


def cached_tokenize(rows: list[dict], tokenize, cache_file: pathlib.Path, noun: str, max_seq_len: int, log=print):
    """Map `tokenize` over `rows` with `datasets`, cached in `cache_file` (named by a content
    fingerprint); report how many rows were shortened or still too long, and keep the rows
    that fit. Each tokenized row carries `n_dropped` and `fits`."""
    import datasets

    cache_file.parent.mkdir(parents=True, exist_ok=True)
    if cache_file.is_file():
        ds = datasets.Dataset.from_file(str(cache_file))
        log(f"tokenized {noun} from cache {cache_file}")
    else:
        ds = datasets.Dataset.from_list(rows).map(tokenize, cache_file_name=str(cache_file),
                                                  desc=f"tokenize {noun}", load_from_cache_file=False)
    shortened = int(np.sum(np.asarray(ds["n_dropped"]) > 0))
    too_long = int(len(ds) - np.sum(ds["fits"]))
    log(f"{len(ds)} {noun}; {shortened} shortened by dropping oldest history entries; "
        f"{too_long} still longer than max_seq_len={max_seq_len} and skipped")
    ds = ds.filter(lambda fits: fits, input_columns="fits", keep_in_memory=True)
    if len(ds) == 0:
        raise UserError(f"no training {noun} fit max_seq_len={max_seq_len}")
    return ds, {noun: len(ds), "shortened": shortened, "skipped_too_long": too_long}


def tokenized_dataset(paths: list[str], tokenizer, settings: list[str], prompt_format: str,
                      max_seq_len: int, max_samples: int, declared_format: str, cache_dir: pathlib.Path,
                      log=print):
    """A `datasets.Dataset` of tokenized examples that fit, cached by content fingerprint."""
    examples = load_sft_examples(paths, settings, max_samples, declared_format)
    key = _fingerprint(paths, tokenizer, {"settings": settings, "prompt_format": prompt_format,
                                          "max_seq_len": max_seq_len, "max_samples": max_samples,
                                          "format": declared_format, "kind": "sft-v1"})
    renderer = make_renderer(tokenizer, prompt_format)  # the chat template, or LLaMA-Factory's llama3
    return cached_tokenize(examples, lambda ex: tokenize_example(renderer, ex, prompt_format, max_seq_len),
                           cache_dir / f"sft-{key}.arrow", "examples", max_seq_len, log)


def seq_bucket(length: int, max_seq_len: int) -> int:
    bucket = 64
    while bucket < length:
        bucket *= 2
    return min(bucket, max_seq_len)


def epoch_rows(lengths: list[int], seed: int, epoch: int, packing: bool, max_len: int,
               max_per_row: int | None = None) -> list[list[int]]:
    """One epoch's rows of example indices: a permutation drawn from (seed, epoch), then,
    with packing, consecutive examples share a row while they fit `max_len` (and
    `max_per_row`)."""
    order = np.random.default_rng([seed, epoch]).permutation(len(lengths)).tolist()
    if not packing:
        return [[i] for i in order]
    rows, current, used = [], [], 0
    for i in order:
        full = max_per_row is not None and len(current) == max_per_row
        if current and (used + lengths[i] > max_len or full):
            rows.append(current)
            current, used = [], 0
        current.append(i)
        used += lengths[i]
    if current:
        rows.append(current)
    return rows


@dataclasses.dataclass
class SequenceBatcher:
    """Deterministic batches of token sequences for step number `step`.

    Rows are examples (or, with packing, several examples packed into one row with
    segment ids). Each epoch visits the rows in a permutation drawn from (seed, epoch);
    batch `step` is therefore a pure function of the step, which is what makes resume exact.
    Returned arrays are [accumulation, micro_batch, T] with T a power-of-two bucket.
    """

    sequences: list[list[int]]
    masks: list[list[int]]
    batch_size: int
    micro_batch_size: int
    max_seq_len: int
    seed: int
    packing: bool = False
    pad_id: int = 0

    def __post_init__(self):
        self._rows_cache: dict[int, list[list[int]]] = {}

    def rows(self, epoch: int) -> list[list[int]]:
        """Row -> example indices, for one epoch."""
        if epoch not in self._rows_cache:
            self._rows_cache = {epoch: epoch_rows([len(s) - 1 for s in self.sequences], self.seed, epoch,
                                                  self.packing, self.max_seq_len)}
        return self._rows_cache[epoch]

    def steps_per_epoch(self) -> int:
        return -(-len(self.rows(0)) // self.batch_size)

    def rows_of_step(self, step: int) -> tuple[int, list[list[int]]]:
        """(epoch, the batch's rows), padded with empty rows in an epoch's last batch."""
        epoch, within = divmod(step, self.steps_per_epoch())
        rows = self.rows(epoch)[within * self.batch_size:(within + 1) * self.batch_size]
        return epoch, rows + [[] for _ in range(self.batch_size - len(rows))]

    def batch(self, step: int) -> dict[str, np.ndarray]:
        epoch, rows = self.rows_of_step(step)
        length = seq_bucket(max((sum(len(self.sequences[i]) - 1 for i in r) for r in rows), default=1),
                            self.max_seq_len)
        shape = (self.batch_size, length)
        out = {"tokens": np.full(shape, self.pad_id, np.int32), "targets": np.zeros(shape, np.int32),
               "loss_mask": np.zeros(shape, np.float32), "positions": np.zeros(shape, np.int32),
               "segment_ids": np.zeros(shape, np.int32)}
        for r, row in enumerate(rows):
            at = 0
            for segment, i in enumerate(row, 1):
                seq, mask = self.sequences[i], self.masks[i]
                n = len(seq) - 1
                out["tokens"][r, at:at + n] = seq[:-1]
                out["targets"][r, at:at + n] = seq[1:]
                out["loss_mask"][r, at:at + n] = mask[1:]
                out["positions"][r, at:at + n] = np.arange(n)
                out["segment_ids"][r, at:at + n] = segment
                at += n
        out.update(gather_targets(out["loss_mask"], out["targets"]))
        accumulation = self.batch_size // self.micro_batch_size
        out = {k: v.reshape(accumulation, self.micro_batch_size, *v.shape[1:]) for k, v in out.items()}
        out["epoch"], out["rows"] = epoch, [row for row in rows if row]
        return out


def gather_targets(loss_mask_BxT: np.ndarray, targets_BxT: np.ndarray) -> dict[str, np.ndarray]:
    """The positions that carry a loss, [B, K] (K a power-of-two bucket): the model then
    computes logits only there. PEToolBench answers are ~35 tokens after ~2,600 prompt tokens,
    so this skips ~99% of the output head and of the [T, vocab] float32 log-softmax."""
    counts = loss_mask_BxT.sum(axis=1).astype(int)
    k = seq_bucket(max(int(counts.max()), 1), 1 << 30)
    batch = loss_mask_BxT.shape[0]
    idx, ids, mask = (np.zeros((batch, k), np.int32), np.zeros((batch, k), np.int32),
                      np.zeros((batch, k), np.float32))
    for r in range(batch):
        where = np.nonzero(loss_mask_BxT[r])[0]
        idx[r, :len(where)] = where
        ids[r, :len(where)] = targets_BxT[r, where]
        mask[r, :len(where)] = 1.0
    return {"target_idx": idx, "target_ids": ids, "target_mask": mask}


def check_batch_has_targets(batch: dict, step: int) -> None:
    if batch["loss_mask"].sum() == 0:
        raise UserError(f"step {step}: the batch has no assistant tokens to learn from (empty assistant "
                        f"mask); check the chat template and data.prompt_format")
