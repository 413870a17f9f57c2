"""Plain torch modules used by pyrogen's models. Nothing here calls Pyro."""

from pyrogen.nn.attention import (
    FullRead,
    FullWrite,
    GaussianAttention,
    GaussianRead,
    GaussianWrite,
    gaussian_filterbank,
)
from pyrogen.nn.caption import CaptionAlignment, CaptionEncoder
from pyrogen.nn.masked import GatedBlock, MaskedConv2d, PixelCNNNet
from pyrogen.nn.mlp import MLP, GaussianHead
from pyrogen.nn.nade import FVSBNNet, NADENet, RNADENet
from pyrogen.nn.pixelrnn import PixelRNNNet, RowLSTM

__all__ = [
    "CaptionAlignment",
    "CaptionEncoder",
    "FVSBNNet",
    "FullRead",
    "FullWrite",
    "GaussianAttention",
    "GaussianRead",
    "GaussianWrite",
    "GatedBlock",
    "GaussianHead",
    "MLP",
    "MaskedConv2d",
    "NADENet",
    "PixelCNNNet",
    "PixelRNNNet",
    "RNADENet",
    "RowLSTM",
    "gaussian_filterbank",
]
