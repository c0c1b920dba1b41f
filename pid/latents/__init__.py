"""Latent spaces of the backbones PiD decodes (channels, scaling, packing, noising)."""
