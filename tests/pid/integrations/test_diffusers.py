"""pid.integrations.diffusers on tiny random diffusers pipelines built from configs on CPU (no
downloads): latent conventions per pipeline, the sigma handed to PiD, and early exit."""

import pytest
import torch

pytest.importorskip("diffusers")
import diffusers  # noqa: E402
from diffusers import EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler  # noqa: E402

import pid  # noqa: E402
from pid.integrations.diffusers import backbone_of, decode_pipeline_latents, early_exit, to_pid_latent  # noqa: E402
from pid.latents.backbones import expected_latent_shape, get_backbone  # noqa: E402
from pid.latents.transforms import euler_to_vp  # noqa: E402
from tiny import tiny_net  # noqa: E402

TEXT_LEN, TEXT_DIM, SIZE, STEPS = 6, 32, 64, 4


def _flux():
    tr = diffusers.FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=TEXT_DIM, pooled_projection_dim=TEXT_DIM, axes_dims_rope=(4, 6, 6),
    )
    pipe = diffusers.FluxPipeline(FlowMatchEulerDiscreteScheduler(), None, None, None, None, None, tr)
    return pipe, {"prompt_embeds": torch.randn(1, TEXT_LEN, TEXT_DIM), "pooled_prompt_embeds": torch.randn(1, TEXT_DIM)}


def _flux2():
    tr = diffusers.Flux2Transformer2DModel(
        in_channels=128, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=TEXT_DIM, timestep_guidance_channels=16, axes_dims_rope=(4, 4, 4, 4),
    )
    pipe = diffusers.Flux2Pipeline(FlowMatchEulerDiscreteScheduler(), None, None, None, tr)
    return pipe, {"prompt_embeds": torch.randn(1, TEXT_LEN, TEXT_DIM)}


def _flux2_klein():
    vae = diffusers.AutoencoderKLFlux2(block_out_channels=(4, 4, 4, 4), layers_per_block=1, norm_num_groups=4,
                                       mid_block_add_attention=False)
    vae.bn.running_mean.normal_()
    vae.bn.running_var.uniform_(0.5, 2.0)
    tr = diffusers.Flux2Transformer2DModel(
        in_channels=128, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=TEXT_DIM, timestep_guidance_channels=16, axes_dims_rope=(4, 4, 4, 4), guidance_embeds=False,
    )
    pipe = diffusers.Flux2KleinPipeline(FlowMatchEulerDiscreteScheduler(), vae, None, None, tr, is_distilled=True)
    return pipe, {"prompt_embeds": torch.randn(1, TEXT_LEN, TEXT_DIM)}


def _sd3():
    tr = diffusers.SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=16, num_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=TEXT_DIM, caption_projection_dim=16, pooled_projection_dim=TEXT_DIM, out_channels=16,
        pos_embed_max_size=16,
    )
    pipe = diffusers.StableDiffusion3Pipeline(tr, FlowMatchEulerDiscreteScheduler(shift=3.0), *([None] * 7))
    return pipe, {"prompt_embeds": torch.randn(1, TEXT_LEN, TEXT_DIM), "pooled_prompt_embeds": torch.randn(1, TEXT_DIM),
                  "guidance_scale": 1.0}


def _sdxl():
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM, attention_head_dim=(2, 4), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + TEXT_DIM,
        norm_num_groups=16,
    )
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="leading", steps_offset=1)
    pipe = diffusers.StableDiffusionXLPipeline(None, None, None, None, None, unet, scheduler)
    return pipe, {"prompt_embeds": torch.randn(1, TEXT_LEN, TEXT_DIM), "pooled_prompt_embeds": torch.randn(1, TEXT_DIM),
                  "guidance_scale": 1.0}


def _qwenimage():
    tr = diffusers.QwenImageTransformer2DModel(
        patch_size=2, in_channels=64, out_channels=16, num_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=TEXT_DIM, axes_dims_rope=(8, 4, 4),
    )
    pipe = diffusers.QwenImagePipeline(FlowMatchEulerDiscreteScheduler(), None, None, None, tr)
    return pipe, {"prompt_embeds": torch.randn(1, TEXT_LEN, TEXT_DIM),
                  "prompt_embeds_mask": torch.ones(1, TEXT_LEN, dtype=torch.long), "true_cfg_scale": 1.0}


def _zimage():
    tr = diffusers.ZImageTransformer2DModel(dim=32, n_layers=1, n_refiner_layers=1, n_heads=2, n_kv_heads=2,
                                            cap_feat_dim=TEXT_DIM, axes_dims=[4, 6, 6], axes_lens=[64, 32, 32])
    pipe = diffusers.ZImagePipeline(FlowMatchEulerDiscreteScheduler(), None, None, None, tr)
    return pipe, {"prompt_embeds": [torch.randn(TEXT_LEN, TEXT_DIM)], "guidance_scale": 0.0}


PIPELINES = {"flux": _flux, "flux2": _flux2, "flux2-klein-4b": _flux2_klein, "sd3": _sd3, "sdxl": _sdxl,
             "qwenimage": _qwenimage, "zimage": _zimage}


@pytest.fixture(scope="module")
def pipelines():
    torch.manual_seed(0)
    built = {}
    for name, build in PIPELINES.items():
        pipe, kwargs = build()
        pipe.set_progress_bar_config(disable=True)
        built[name] = (pipe, dict(kwargs, height=SIZE, width=SIZE, num_inference_steps=STEPS))
    return built


class RecordingDecoder:
    """Stands in for pid.Decoder: keeps what it was handed, returns a blank image of the right size."""

    def __init__(self, backbone):
        self.cell = get_backbone(backbone).sr_scale * get_backbone(backbone).latent_spatial_down_factor

    def decode(self, latent, degrade_sigma, caption_embeds, **kwargs):
        self.latent, self.sigma, self.kwargs = latent, degrade_sigma, kwargs
        return torch.zeros(latent.shape[0], 3, latent.shape[-2] * self.cell, latent.shape[-1] * self.cell)


def _generator():
    return torch.Generator().manual_seed(0)


def _network(pipe):
    return pipe.unet if hasattr(pipe, "unet") else pipe.transformer


def _run_recording_every_step(pipe, kwargs):
    """The pipeline's own latents after each step, and its scheduler sigma there."""
    steps = []

    def record(pipeline, _index, _t, tensors):
        scheduler = pipeline.scheduler
        steps.append((tensors["latents"].clone(), float(scheduler.sigmas[scheduler.step_index])))
        return {}

    out = pipe(**kwargs, generator=_generator(), output_type="latent", callback_on_step_end=record,
               callback_on_step_end_tensor_inputs=["latents"])
    return out.images, steps


@pytest.mark.parametrize("backbone", list(PIPELINES))
def test_pipeline_latents_reach_pid_in_its_latent_space(pipelines, backbone):
    pipe, kwargs = pipelines[backbone]
    assert backbone_of(pipe) == backbone
    latents = pipe(**kwargs, generator=_generator(), output_type="latent").images
    decoder = RecordingDecoder(backbone)
    captions = torch.zeros(1, 3, 8)
    images = decode_pipeline_latents(pipe, latents, decoder, captions, height=SIZE, width=SIZE, seed=5)
    spec = get_backbone(backbone)
    out_side = SIZE * spec.sr_scale
    assert tuple(decoder.latent.shape) == (1, *expected_latent_shape(backbone, out_side))
    assert images.shape == (1, 3, out_side, out_side)
    assert decoder.sigma == 0.0 and decoder.kwargs == {"seed": 5}


@pytest.mark.parametrize("backbone", list(PIPELINES))
def test_early_exit_decodes_the_pipelines_own_latent_at_that_step(pipelines, backbone):
    pipe, kwargs = pipelines[backbone]
    _, every_step = _run_recording_every_step(pipe, kwargs)
    calls = []
    hook = _network(pipe).register_forward_pre_hook(lambda *_: calls.append(1))
    decoder = RecordingDecoder(backbone)
    try:
        result = early_exit(pipe, decoder, exit_step=2, caption_embeds=torch.zeros(1, 3, 8),
                            generator=_generator(), **kwargs)
    finally:
        hook.remove()
    own_latent, own_sigma = every_step[1]  # after step 2
    assert torch.equal(result.pipeline_latent, own_latent)
    assert len(calls) == 2 and result.steps_run == 2 and result.steps_total == STEPS and result.steps_saved == 2
    assert 0.0 < own_sigma
    expected_latent = to_pid_latent(pipe, own_latent, backbone, (SIZE, SIZE))
    expected_sigma = own_sigma  # flow matching: the scheduler sigma itself
    if backbone == "sdxl":  # Euler frame x0 + s * eps -> PiD's variance-preserving frame
        expected_latent, expected_sigma = euler_to_vp(expected_latent, own_sigma)
        assert expected_sigma == pytest.approx(own_sigma / (own_sigma**2 + 1) ** 0.5)
    assert torch.equal(result.latent, expected_latent)
    assert decoder.sigma == pytest.approx(expected_sigma) and result.degrade_sigma == decoder.sigma
    assert decoder.latent is result.latent


def test_early_exit_at_the_last_step_is_the_finished_latent_at_sigma_zero(pipelines):
    pipe, kwargs = pipelines["flux"]
    final = pipe(**kwargs, generator=_generator(), output_type="latent").images
    result = early_exit(pipe, RecordingDecoder("flux"), exit_step=STEPS, caption_embeds=torch.zeros(1, 3, 8),
                        generator=_generator(), **kwargs)
    assert torch.equal(result.pipeline_latent, final) and result.degrade_sigma == 0.0 and result.steps_saved == 0
    with pytest.raises(ValueError, match="exceeds the pipeline's 4 steps"):
        early_exit(pipe, RecordingDecoder("flux"), exit_step=STEPS + 1, caption_embeds=None, **kwargs)
    with pytest.raises(ValueError, match="sets output_type itself"):
        early_exit(pipe, RecordingDecoder("flux"), exit_step=1, caption_embeds=None, output_type="pil", **kwargs)


def test_real_pid_decode_of_a_flux_pipeline_latent(pipelines):
    pipe, kwargs = pipelines["flux"]
    net = tiny_net()
    captions = torch.randn(1, 5, net.config["txt_embed_dim"])
    result = early_exit(pipe, pid.Decoder(net), exit_step=3, caption_embeds=captions, generator=_generator(),
                        decode_kwargs={"seed": 0}, **kwargs)
    assert result.images.shape == (1, 3, SIZE * 4, SIZE * 4)
    assert result.images.abs().max() <= 1.0 and torch.isfinite(result.images).all()
