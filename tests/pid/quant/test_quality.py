"""Issue 13's quality gate on the CPU emulation: the fp8 decode (default policy) within 35 dB
PSNR of the bf16 decode, on seeded random weights and on the documented outlier variant
(`pid.quant.quality`); fp8's and bf16's PSNR against the float32 decode printed side by side."""

import pytest

from pid.quant.policy import Policy
from pid.quant.quality import TARGET_PSNR_DB, WEIGHT_SETS, decode_all, format_table, quality_net


@pytest.mark.parametrize("weight_set", WEIGHT_SETS)
def test_fp8_decode_is_within_target_of_bf16(weight_set):
    rows = decode_all(quality_net(weight_set), {"fp8 (default policy)": Policy()}).rows()
    print("\n" + format_table({weight_set: rows}))
    bf16, fp8 = rows
    assert fp8["psnr_vs_bf16"] >= TARGET_PSNR_DB, format_table({weight_set: rows})
    # fp8 cannot be closer to float32 than bf16 is, or the comparison is broken.
    assert fp8["psnr_vs_fp32"] <= bf16["psnr_vs_fp32"]


def test_layer_sensitivity_measures_every_group():
    from pid.quant.quality import SENSITIVITY_GROUPS, layer_sensitivity
    from tiny import tiny_net

    rows = layer_sensitivity(tiny_net(), image_size=32)
    assert [row["path"] for row in rows][: len(SENSITIVITY_GROUPS)] == list(SENSITIVITY_GROUPS)
    assert len(rows) == len(SENSITIVITY_GROUPS) + 4 and all(row["psnr_vs_bf16"] > 20 for row in rows)


def test_the_table_command_runs(capsys):
    from pid.quant.quality import main

    assert main(["--size", "32"]) == 0
    out = capsys.readouterr().out
    assert "CPU emulation" in out and out.count("fp8, fa3 attention") == len(WEIGHT_SETS)
