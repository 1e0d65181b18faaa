"""Runners turn (entry, setting) tasks into prediction rows.

A runner has `plan(tasks, batch_size) -> iterable of batches` (it may reorder, e.g. by
prompt length) and `run_batch(batch) -> list of rows` (eval.predictions.prediction_row, in
the batch's order). The run loop writes each batch's rows before asking for the next. A
runner may also have `run_batches(batches) -> iterator of row lists`, which the run loop
prefers: the JAX model runner uses it to compute one batch ahead of the one being written.
`--model` picks one: `rule`, `openai:NAME`, or a model directory (HF or petool).
"""
