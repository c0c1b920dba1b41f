"""A tiny randomly initialised PiDNet for tests that need no golden vectors."""

import torch

import pid

TINY_V1 = {
    "num_groups": 3, "hidden_size": 24, "pixel_hidden_size": 8, "pixel_attn_hidden_size": 16,
    "pixel_num_groups": 2, "patch_depth": 3, "txt_embed_dim": 40, "txt_max_length": 12,
    "lq_hidden_dim": 16, "rope_ref_h": 64, "rope_ref_w": 64,
}
TINY_V15 = {**TINY_V1, "lq_gate_type": "sigma_aware_per_token", "lq_conv_padding_mode": "replicate",
            "pit_lq_inject": True, "lq_aux_rgb_head": True}


def tiny_net(overrides=None, seed=0):
    torch.manual_seed(seed)
    net = pid.build_model({**TINY_V1, **(overrides or {})}).eval()
    with torch.no_grad():  # the release zero-inits heads; random values make every path count
        for param in net.parameters():
            param.normal_(0, 0.2)
    return net


def tiny_inputs(net, batch=2, image_hw=(64, 96), text_len=7, seed=1):
    gen = torch.Generator().manual_seed(seed)
    latent = torch.randn(batch, *net.expected_latent_shape(image_hw), generator=gen)
    captions = torch.randn(batch, text_len, net.config["txt_embed_dim"], generator=gen)
    return latent, torch.full((batch,), 0.3), captions
