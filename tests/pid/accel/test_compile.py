"""pid.compile / pid.revert, every switch, and the CUDA-graph plumbing on a CPU stand-in."""

import pytest
import torch

import pid
import pid_kernels
from pid.accel.graphs import DecodeGraphs, EagerBackend, caption_bucket
from tiny import TINY_V15, tiny_inputs, tiny_net


@pytest.fixture
def decoder():
    decoder = pid.Decoder(tiny_net(TINY_V15))
    yield decoder
    pid.revert(decoder)


def test_compile_returns_same_object_with_report(decoder):
    keys = list(decoder.net.state_dict())
    assert pid.compile(decoder) is decoder
    report = decoder.pid_compile_report
    assert "step-invariant hoisting" in report.applied
    assert report.skipped["CUDA graphs"] == ["cpu device (CUDA graphs need a CUDA GPU)"]
    assert "switched off" not in str(report)
    assert list(decoder.net.state_dict()) == keys


def test_compile_revert_round_trip_keeps_outputs(decoder):
    inputs = tiny_inputs(decoder.net, batch=1, image_hw=(32, 64))
    eager = decoder.decode(*inputs, seed=5)
    pid.compile(decoder)
    torch.testing.assert_close(decoder.decode(*inputs, seed=5), eager, rtol=1e-5, atol=1e-5)
    pid.revert(decoder)
    assert decoder.pid_compile_report is None and not pid_kernels.enabled()
    assert torch.equal(decoder.decode(*inputs, seed=5), eager)


def test_switches_off_are_reported_and_not_applied(decoder):
    config = pid.CompileConfig(hoist_step_invariant=False, cuda_graphs=False, compile_glue=False,
                               precompute_gate_lq=False, fused_ops={name: False for name in pid_kernels.REGISTRY})
    pid.compile(decoder, config)
    report = decoder.pid_compile_report
    assert report.applied == []
    assert all(reasons == ["switched off in CompileConfig"] for reasons in report.skipped.values())
    assert not decoder.hoist_step_invariant and not pid_kernels.enabled()


def test_step_invariant_hoisting_off_gives_same_images(decoder):
    inputs = tiny_inputs(decoder.net, image_hw=(64, 64))
    hoisted = decoder.decode(*inputs, seed=1)
    decoder.hoist_step_invariant = False
    torch.testing.assert_close(decoder.decode(*inputs, seed=1), hoisted, rtol=1e-5, atol=1e-5)


def test_unknown_op_switch_is_an_error(decoder):
    with pytest.raises(KeyError, match="unknown ops \\['nope'\\]"):
        pid.compile(decoder, pid.CompileConfig(fused_ops={"nope": True}))


def test_glue_compile_keeps_outputs_and_reverts():
    net = tiny_net()
    decoder = pid.Decoder(net)
    inputs = tiny_inputs(net, image_hw=(64, 64))
    eager = decoder.decode(*inputs, seed=2)
    # aot_eager traces exactly what inductor would (fullgraph: no breaks) without C++ builds.
    config = pid.CompileConfig(compile_glue=True, glue_backend="aot_eager",
                               fused_ops={name: False for name in pid_kernels.REGISTRY})
    pid.compile(decoder, config)
    assert "torch.compile of the glue" in decoder.pid_compile_report.applied
    torch.testing.assert_close(decoder.decode(*inputs, seed=2), eager, rtol=1e-4, atol=1e-4)
    pid.revert(decoder)
    assert "pixel_features" not in net.__dict__


def test_graph_replays_match_eager_and_capture_once_per_key():
    net = tiny_net()
    decoder = pid.Decoder(net)
    latent, sigma, captions = tiny_inputs(net)
    eager = [decoder.decode(latent, sigma, captions, seed=seed) for seed in (3, 4)]
    backend = EagerBackend(net.device)
    decoder.graphs = DecodeGraphs(backend=backend)
    assert torch.equal(decoder.decode(latent, sigma, captions, seed=3), eager[0])
    assert torch.equal(decoder.decode(latent, sigma, captions, seed=4), eager[1])
    assert torch.equal(decoder.decode(latent, sigma, captions, seed=3), eager[0])
    assert backend.captures == 1
    decoder.decode(latent[:1], sigma[:1], captions[:1], seed=3)  # a new batch size captures again
    assert backend.captures == 2


def test_gate_precompute_and_failed_ops_are_part_of_the_graph_key():
    """Both change what a capture records, so each combination captures its own graph."""
    net = tiny_net()
    decoder = pid.Decoder(net)
    inputs = tiny_inputs(net)
    backend = EagerBackend(net.device)
    failed = []
    decoder.graphs = DecodeGraphs(backend=backend, failed_ops=lambda: failed)
    eager = decoder.decode(*inputs, seed=1)
    net.precompute_gate_lq = True
    torch.testing.assert_close(decoder.decode(*inputs, seed=1), eager, rtol=1e-5, atol=1e-5)
    failed.append("sigma_gate")
    decoder.decode(*inputs, seed=1)
    assert backend.captures == 3
    keys = sorted(decoder.graphs.graphs, key=lambda key: (key.precompute_gate_lq, key.failed_ops))
    assert [(key.precompute_gate_lq, key.failed_ops) for key in keys] == [
        (False, ()), (True, ()), (True, ("sigma_gate",))
    ]
    decoder.decode(*inputs, seed=2)
    assert backend.captures == 3


def test_masked_captions_pad_to_a_bucket_exactly():
    net = tiny_net({"txt_max_length": 40})
    decoder = pid.Decoder(net)
    latent, sigma, captions = tiny_inputs(net, text_len=20)
    mask = torch.ones(2, 20)
    mask[1, 15:] = 0
    eager = decoder.decode(latent, sigma, captions, caption_mask=mask, seed=0)
    backend = EagerBackend(net.device)
    decoder.graphs = DecodeGraphs(backend=backend)
    graphed = decoder.decode(latent, sigma, captions, caption_mask=mask, seed=0)
    assert next(iter(decoder.graphs.graphs)).caption_len == caption_bucket(20, True) == 32
    torch.testing.assert_close(graphed, eager, rtol=1e-5, atol=1e-5)


def test_caption_bucket_keeps_unmasked_lengths():
    assert caption_bucket(77, has_mask=False) == 77
    assert caption_bucket(77, has_mask=True) == 128
    assert caption_bucket(300, has_mask=True) == 300


def test_failed_capture_decodes_eagerly_and_remembers():
    class FailingBackend(EagerBackend):
        def capture(self, body, generator):
            raise RuntimeError("operation not permitted when stream is capturing")

    net = tiny_net()
    decoder = pid.Decoder(net)
    inputs = tiny_inputs(net)
    eager = decoder.decode(*inputs, seed=1)
    decoder.graphs = DecodeGraphs(backend=FailingBackend(net.device))
    with pytest.warns(UserWarning, match="decoding eagerly"):
        assert torch.equal(decoder.decode(*inputs, seed=1), eager)
    assert torch.equal(decoder.decode(*inputs, seed=1), eager)
    assert "not permitted" in next(iter(decoder.graphs.failures.values()))


@pytest.mark.parametrize("overrides", [{}, TINY_V15])
def test_gate_latent_half_precompute_matches(overrides):
    net = tiny_net(overrides)
    decoder = pid.Decoder(net)
    inputs = tiny_inputs(net)
    whole = decoder.decode(*inputs, seed=6)
    config = pid.CompileConfig(precompute_gate_lq=True, fused_ops={name: False for name in pid_kernels.REGISTRY})
    pid.compile(decoder, config)
    assert "gate latent-half precompute" in decoder.pid_compile_report.applied and net.precompute_gate_lq
    torch.testing.assert_close(decoder.decode(*inputs, seed=6), whole, rtol=1e-5, atol=1e-5)
    pid.revert(decoder)
    assert not net.precompute_gate_lq
