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

import numpy as np

from petool_jax import petoolbench
from petool_jax.chat import ChatRenderer
from petool_jax.errors import UserError
from petool_jax.train.llama_factory import make_renderer
from petool_jax.files import read_records
from petool_jax.train.records import require

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


def tokenize_example(renderer: ChatRenderer, example: dict, prompt_format: str, max_seq_len: int) -> dict:
    """input_ids, assistant_mask, n_dropped (history entries removed), fits."""

    def count(messages):
        return len(renderer.full_ids(messages, example["answer"]))

    messages, n_dropped = petoolbench.fit_instruction(example["instruction"], example["query"], count, max_seq_len,
                                                      prompt_format)
    ids, mask = renderer.encode(messages, example["answer"])
    return {"input_ids": ids, "assistant_mask": mask, "n_dropped": n_dropped, "fits": len(ids) <= max_seq_len}


def fingerprint(paths, tokenizer, parts: dict) -> str:
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
    key = fingerprint(paths, tokenizer, {"settings": settings, "prompt_format": prompt_format,
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


@dataclasses.dataclass(kw_only=True)
class Batcher:
    """What every training batcher shares: the step -> rows logic and the choice of rows.

    Items (examples or pairs) are grouped into rows; each epoch visits the rows in a
    permutation drawn from (seed, epoch), so batch `step` is a pure function of the step,
    which is what makes resume exact and lets every host agree on the global batch
    without talking to the others. A batch is [accumulation, micro_batch, ...]; with
    `local` (the micro-batch rows this process's devices hold, see
    setup.local_micro_rows) only those rows are built, [accumulation, len(local), ...],
    while every shape (length bucket, target bucket) is still the WHOLE batch's, so the
    hosts' pieces fit together into one global array.

    Subclasses (dataclasses holding the items) define `n_items` and `item_length`, and
    build with `local_part` and `reshape`. The settings below are keyword-only.
    """

    batch_size: int  # rows per optimizer step
    micro_batch_size: int  # rows per accumulation slice (split over the mesh's data x fsdp)
    max_seq_len: int
    seed: int
    packing: bool = False
    pad_id: int = 0
    max_per_row = None  # items per packed row (None: as many as fit); not a field
    _rows_cache: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def n_items(self) -> int:
        raise NotImplementedError

    def item_length(self, i: int) -> int:
        """Tokens item `i` takes in a row."""
        raise NotImplementedError

    def rows(self, epoch: int) -> list[list[int]]:
        """Row -> item indices, for one epoch (the last epoch's rows are cached)."""
        if epoch not in self._rows_cache:
            lengths = [self.item_length(i) for i in range(self.n_items())]
            self._rows_cache = {epoch: epoch_rows(lengths, self.seed, epoch, self.packing, self.max_seq_len,
                                                  self.max_per_row)}
        return self._rows_cache[epoch]

    def steps_per_epoch(self) -> int:
        return -(-len(self.rows(0)) // self.batch_size)

    def rows_of_step(self, step: int) -> tuple[int, list[list[int]]]:
        """(epoch, the batch's rows), padded with empty rows in an epoch's last batch."""
        epoch, within = divmod(step, self.steps_per_epoch())
        rows = self.rows(epoch)[within * self.batch_size:(within + 1) * self.batch_size]
        return epoch, rows + [[] for _ in range(self.batch_size - len(rows))]

    def local_part(self, rows: list[list[int]], local) -> list[list[int]]:
        """The rows to build, in [accumulation, local] order."""
        if local is None:
            return rows
        local = list(local)
        if not local or sorted(set(local)) != local or local[-1] >= self.micro_batch_size:
            raise ValueError(f"local micro-batch rows {local} are not sorted distinct rows of "
                             f"0..{self.micro_batch_size - 1}")
        accumulation = self.batch_size // self.micro_batch_size
        return [rows[a * self.micro_batch_size + m] for a in range(accumulation) for m in local]

    def reshape(self, arrays: dict[str, np.ndarray], local=None) -> dict:
        """[accumulation * micro, ...] -> [accumulation, micro, ...]; a local batch also
        records which micro rows it holds (setup.place_batch assembles the global array)."""
        accumulation = self.batch_size // self.micro_batch_size
        micro = self.micro_batch_size if local is None else len(local)
        out: dict = {k: v.reshape(accumulation, micro, *v.shape[1:]) for k, v in arrays.items()}
        if local is not None:
            out["local_rows"], out["micro_batch_size"] = tuple(local), self.micro_batch_size
        return out


@dataclasses.dataclass
class SequenceBatcher(Batcher):
    """Deterministic batches of token sequences for step number `step`.

    Rows are examples (or, with packing, several examples packed into one row with
    segment ids). Returned arrays are [accumulation, micro_batch, T] with T a power-of-two
    bucket, plus `n_tokens` / `n_targets` (non-padding and assistant tokens of the whole
    global batch, also when only local rows are built) and `n_head_positions`.
    """

    sequences: list[list[int]]
    masks: list[list[int]]

    def n_items(self) -> int:
        return len(self.sequences)

    def item_length(self, i: int) -> int:
        return len(self.sequences[i]) - 1

    def n_targets_of(self, i: int) -> int:
        return int(sum(self.masks[i][1:]))

    def batch(self, step: int, local=None) -> dict:
        epoch, rows = self.rows_of_step(step)
        length = seq_bucket(max((sum(self.item_length(i) for i in r) for r in rows), default=1),
                            self.max_seq_len)
        targets_per_row = [sum(self.n_targets_of(i) for i in r) for r in rows]
        k = seq_bucket(max(max(targets_per_row, default=0), 1), 1 << 30)  # as gather_targets' bucket
        built = self.local_part(rows, local)
        shape = (len(built), length)
        out = {"tokens": np.full(shape, self.pad_id, np.int32), "targets": np.zeros(shape, np.int32),
               "loss_mask": np.zeros(shape, np.float32), "positions": np.zeros(shape, np.int32),
               "segment_ids": np.zeros(shape, np.int32)}
        for r, row in enumerate(built):
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
        out.update(gather_targets(out["loss_mask"], out["targets"], k))
        out = self.reshape(out, local)
        out["epoch"], out["rows"] = epoch, [row for row in rows if row]
        out["n_tokens"] = sum(self.item_length(i) for r in rows for i in r)
        out["n_targets"] = sum(targets_per_row)
        out["n_head_positions"] = self.batch_size * k
        return out


def gather_targets(loss_mask_BxT: np.ndarray, targets_BxT: np.ndarray, k: int | None = None) -> dict[str, np.ndarray]:
    """The positions that carry a loss, [B, K] (K a power-of-two bucket, or `k` when the
    caller knows the whole global batch's): the model then computes logits only there.
    PEToolBench answers are ~35 tokens after ~2,600 prompt tokens, so this skips ~99% of the
    output head and of the [T, vocab] float32 log-softmax."""
    counts = loss_mask_BxT.sum(axis=1).astype(int)
    if k is None:
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
    """The WHOLE step's batch must carry assistant tokens (`n_targets` counts them over every
    host's rows; a host's own rows may be all padding at an epoch's end)."""
    total = batch["n_targets"] if "n_targets" in batch else batch["loss_mask"].sum()
    if total == 0:
        raise UserError(f"step {step}: the batch has no assistant tokens to learn from (empty assistant "
                        f"mask); check the chat template and data.prompt_format")
