"""Helpers shared by the ToMe tests."""
import torch

TINY_ARCH = dict(
    embed_dims=48, num_layers=4, num_heads=4, feedforward_channels=96)


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter random values (zeros-initialised tokens too)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return module
