"""bench.scaling's attention sweep: the crossover it reports and how a point that did not fit
or failed is written."""

from bench.scaling import attention_table, crossover


def pt(seq, impl, seconds=None, **extra):
    p = {"seq": seq, "attention": impl, **extra}
    if seconds is not None:
        p.update(median_seconds_per_step=seconds, seconds_per_step=[seconds], tokens_per_s=seq / seconds,
                 xla_memory={"temp_size_in_bytes": 2**20, "total_bytes": 2**21}, peak_rss_bytes=2**22,
                 compile_seconds=1.0)
    return p


def test_crossover_is_where_blockwise_stays_faster():
    points = [pt(512, "xla", 1.0), pt(512, "blockwise", 0.9),  # faster once by noise...
              pt(1024, "xla", 2.0), pt(1024, "blockwise", 2.2),  # ...but not here
              pt(2048, "xla", 8.0), pt(2048, "blockwise", 5.0),
              pt(16384, "xla", did_not_fit=True, xla_memory={"total_bytes": 40 * 2**30}), pt(16384, "blockwise", 90.0)]
    assert crossover(points) == 2048
    assert crossover(points[:4]) is None
    assert crossover(points[:4] + [pt(4096, "xla", failed=True), pt(4096, "blockwise", failed=True)]) is None


def test_table_says_did_not_fit_and_failed():
    table = attention_table([pt(16384, "xla", did_not_fit=True, xla_memory={"total_bytes": 40 * 2**30}),
                             pt(16384, "blockwise", failed=True), pt(1024, "blockwise", 2.0)])
    assert "| 16384 | xla | did not fit (XLA asks 40.0 GiB > budget) |" in table
    assert "| 16384 | blockwise | failed twice (see the run's log) |" in table
    assert "| 1024 | blockwise | 2.00 | 1 | 512 | 1 | 2 | 4 | 1.0 |" in table
