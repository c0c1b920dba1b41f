"""The roofline model behind docs/parallel.md."""

from pid.parallel import model


def test_one_rank_sends_nothing_and_ulysses_volume_follows_the_formula():
    single = model.estimate(4096, 1, "NVLink (900 GB/s)")
    assert single.bytes_per_rank == 0 and single.speedup == 1.0
    two = model.estimate(4096, 2, "NVLink (900 GB/s)")
    tokens = (4096 // 16) ** 2 / 2
    mmdit = 14 * (4 * tokens * 1536 + 300 * 1536) / 2 * 2  # (P-1)/P = 1/2, bf16
    pit = 2 * 4 * tokens * 1152 / 2 * 2
    assert abs(two.bytes_per_rank - (mmdit + pit)) < 1
    assert two.mode == "ulysses" and model.estimate(4096, 2, "IB 400 Gb/s").mode == "ring"


def test_scaling_never_exceeds_the_rank_count_and_grows_with_the_image():
    for link in model.LINKS:
        for ranks in (2, 4, 8):
            speedups = [model.estimate(side, ranks, link).speedup for side in (2048, 4096, 8192)]
            assert all(0 < s <= ranks for s in speedups)
            assert speedups == sorted(speedups)


def test_table_has_a_row_per_case():
    rows = model.table().splitlines()
    assert len(rows) == 2 + 3 * (1 + 3 * 3)
