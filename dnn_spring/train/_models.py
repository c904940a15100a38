"""The networks of the paper (docs/science.md#networks): a BatchNorm MLP and a small CNN.

Both models are built from a :class:`~dnn_spring.train._config.ModelConfig` and are
initialised from an explicit ``torch.Generator``; constructing a model never
touches PyTorch's global random state.  The modules are first created on the
``meta`` device (which draws nothing) and then filled from a state dict made by
:func:`init_mlp_parameters` / :func:`init_cnn_parameters`.  The batched trainer
uses the same functions to initialise member ``i`` of a stack of networks, so a
batched member and a single run with the same seed start from identical weights.

Draw order (fixed; changing it changes every seeded result): the layers with
weights are visited in forward order (``blocks.0.linear`` or ``blocks.0.conv``,
``blocks.1...``, ..., ``head``); for each layer the weight is drawn first, then
the bias.  BatchNorm layers draw nothing (weight 1, bias 0, running mean 0,
running variance 1).

Initialisation schemes (``ModelConfig.init``) act on the weights only; the
bias is always drawn like PyTorch's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
unless ``zero_bias`` is set.  fan_in is ``in_features`` for a Linear layer and
``in_channels * 3 * 3`` for a convolution.

=============  ============================================================
``default``    PyTorch's default: kaiming_uniform with a = sqrt(5), i.e.
               U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (identical draws to
               ``nn.Linear`` given the same generator state)
``orthogonal`` (semi-)orthogonal rows or columns, gain 1
``kaiming``    N(0, gain^2 / fan_in), gain = sqrt(2 / (1 + alpha^2)) for the
               LeakyReLU slope alpha of the config
``normal``     N(0, 1 / fan_in)
``identity``   the identity (``eye`` cropped / zero padded for a Linear layer,
               Dirac for a convolution); draws nothing
=============  ============================================================

After the scheme, every weight (head included) is multiplied by
``init_scale``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from dnn_spring._checks import choice_problem
from dnn_spring.train._config import ARCHS, INITS, ModelConfig

__all__ = ["MLP", "CNN", "build_model", "init_mlp_parameters", "init_cnn_parameters"]


# --------------------------------------------------------------------------- init


def _generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    if seed is not None and generator is not None:
        raise ValueError("pass `seed` or `generator`, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            kind = type(generator).__name__
            raise TypeError(f"`generator` must be a torch.Generator, got {kind}")
        return generator
    return torch.Generator().manual_seed(0 if seed is None else int(seed))


def _init_weight(weight: Tensor, config: ModelConfig, generator: torch.Generator) -> None:
    scheme = config.init
    if scheme == "default":
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    elif scheme == "orthogonal":
        nn.init.orthogonal_(weight, gain=1.0, generator=generator)
    elif scheme == "kaiming":
        nn.init.kaiming_normal_(
            weight, a=config.slope, mode="fan_in", nonlinearity="leaky_relu", generator=generator
        )
    elif scheme == "normal":
        fan_in = weight[0].numel()
        nn.init.normal_(weight, 0.0, 1.0 / math.sqrt(fan_in), generator=generator)
    elif scheme == "identity":
        if weight.dim() == 2:
            nn.init.eye_(weight)
        else:
            nn.init.dirac_(weight)
    else:  # ModelConfig validation makes this unreachable
        raise ValueError(choice_problem("init", scheme, INITS))
    weight.mul_(config.init_scale)


def _init_state(skeleton: nn.Module, config: ModelConfig, generator: torch.Generator) -> dict:
    """Fill a state dict shaped like ``skeleton`` (a meta-device module)."""
    device = generator.device
    state: dict = {}
    for prefix, module in skeleton.named_modules():
        dot = f"{prefix}." if prefix else ""
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            weight = torch.empty(module.weight.shape, device=device)
            _init_weight(weight, config, generator)
            state[dot + "weight"] = weight
            bias = torch.empty(module.bias.shape, device=device)
            bound = 1.0 / math.sqrt(weight[0].numel())
            # Draw even when zeroing, so zero_bias does not shift later draws.
            nn.init.uniform_(bias, -bound, bound, generator=generator)
            state[dot + "bias"] = bias.zero_() if config.zero_bias else bias
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            state[dot + "weight"] = torch.ones(n, device=device)
            state[dot + "bias"] = torch.zeros(n, device=device)
            state[dot + "running_mean"] = torch.zeros(n, device=device)
            state[dot + "running_var"] = torch.ones(n, device=device)
            state[dot + "num_batches_tracked"] = torch.zeros((), dtype=torch.long, device=device)
    return state


def _check_model_config(config: ModelConfig) -> None:
    if not isinstance(config, ModelConfig):
        raise TypeError(f"`config` must be a ModelConfig, got {type(config).__name__}")


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}")
    return value


# --------------------------------------------------------------------------- MLP


def _mlp_children(config: ModelConfig, n_in: int, n_out: int) -> dict:
    """The MLP's child modules, on the meta device (no memory, no draws)."""
    with torch.device("meta"):
        bn = config.batchnorm
        blocks = nn.ModuleList()
        fan_in = n_in
        for _ in range(config.depth - 1):
            block = nn.Sequential()
            block.add_module("linear", nn.Linear(fan_in, config.width))
            block.add_module("bn", nn.BatchNorm1d(config.width) if bn else nn.Identity())
            block.add_module("act", nn.LeakyReLU(config.slope))
            block.add_module("drop", nn.Dropout(config.dropout))
            blocks.append(block)
            fan_in = config.width
        return {
            "input_bn": nn.BatchNorm1d(n_in) if bn else nn.Identity(),
            "blocks": blocks,
            "head": nn.Linear(fan_in, n_out),
        }


def init_mlp_parameters(
    config: ModelConfig, n_in: int, n_out: int, *, generator: torch.Generator
) -> dict:
    """Initial state dict of :class:`MLP` drawn from ``generator``.

    Parameters
    ----------
    config : ModelConfig
        Uses ``depth`` (L), ``width``, ``batchnorm``, ``init``, ``init_scale``,
        ``zero_bias`` and ``slope`` (for ``init="kaiming"``).
    n_in, n_out : int
        Number of input features and of classes.
    generator : torch.Generator
        Source of every random draw, in the order given in the module
        docstring.  The tensors are created on ``generator.device``.

    Returns
    -------
    dict of str to Tensor
        Keys exactly those of ``MLP(config, n_in, n_out).state_dict()``;
        e.g. ``blocks.0.linear.weight`` of shape (width, n_in) and
        ``head.weight`` of shape (n_out, width).
    """
    _check_model_config(config)
    _check_positive("n_in", n_in)
    _check_positive("n_out", n_out)
    skeleton = nn.ModuleDict(_mlp_children(config, n_in, n_out))
    return _init_state(skeleton, config, _generator(None, generator))


class MLP(nn.Module):
    """Fully connected net of docs/science.md#networks: input BN, L-1 hidden blocks, linear head.

    ``input_bn`` -> ``blocks[i]`` = Linear -> BatchNorm1d -> LeakyReLU(alpha)
    -> Dropout(p), i = 0..L-2 -> ``head`` = Linear(width, n_out).  With
    ``batchnorm=False`` both kinds of BatchNorm are ``nn.Identity``.

    Parameters
    ----------
    config : ModelConfig
        ``depth`` is L, so the load curve has L + 1 points (input, L - 1
        hidden blocks, logits).
    n_in : int
        Number of input features; an input of shape (N, ...) is flattened to
        (N, n_in).
    n_out : int
        Number of classes.
    seed : int, optional
        Seed of a fresh generator for the initialisation (0 if neither
        ``seed`` nor ``generator`` is given).
    generator : torch.Generator, optional
        Generator to draw the initialisation from (advanced in place).
    state : dict of str to Tensor, optional
        A full state dict to start from instead (no draws; ``seed`` and
        ``generator`` are then ignored).  The module lives on its device.
    """

    logits_layer = "head"

    def __init__(self, config: ModelConfig, n_in: int, n_out: int, *, seed=None, generator=None,
                 state=None):
        super().__init__()
        _check_model_config(config)
        self.config = config
        self.n_in = _check_positive("n_in", n_in)
        self.n_out = _check_positive("n_out", n_out)
        for name, child in _mlp_children(config, n_in, n_out).items():
            self.add_module(name, child)
        if state is None:
            state = init_mlp_parameters(config, n_in, n_out, generator=_generator(seed, generator))
        self.to_empty(device=state["head.weight"].device)
        self.load_state_dict(state, strict=True)

    def load_curve_layers(self) -> list:
        """Module names of the L + 1 load-curve points, input to logits."""
        return ["input_bn", *(f"blocks.{i}" for i in range(len(self.blocks))), "head"]

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape (N, n_out) for input of shape (N, ...) with n_in entries."""
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.n_in:
            raise ValueError(f"input must have {self.n_in} features per sample, got {x.shape[1]}")
        x = self.input_bn(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


# --------------------------------------------------------------------------- CNN


def _check_image_shape(input_shape) -> tuple:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"`input_shape` must be (C, H, W) for the CNN, got {tuple(input_shape)}")
    if shape[1] % 2 or shape[2] % 2:
        raise ValueError(
            f"`input_shape` must have even H and W for the CNN (MaxPool 2 then Upsample 2 "
            f"must give back H x W), got {shape}; pick an even `image_size`"
        )
    return shape


def _cnn_children(config: ModelConfig, input_shape: tuple, n_out: int) -> dict:
    channels_in, height, width = input_shape
    ch = config.channels
    bn = config.batchnorm
    with torch.device("meta"):
        blocks = nn.ModuleList()
        prev = channels_in
        for _ in range(config.depth - 1):
            block = nn.Sequential()
            block.add_module("conv", nn.Conv2d(prev, ch, kernel_size=3, padding=1))
            block.add_module("bn", nn.BatchNorm2d(ch) if bn else nn.Identity())
            block.add_module("act", nn.LeakyReLU(config.slope))
            block.add_module("pool", nn.MaxPool2d(2))
            block.add_module("up", nn.Upsample(scale_factor=2, mode="nearest"))
            block.add_module("drop", nn.Dropout(config.dropout))
            blocks.append(block)
            prev = ch
        return {
            "input_bn": nn.BatchNorm2d(channels_in) if bn else nn.Identity(),
            "blocks": blocks,
            "head": nn.Linear(prev * height * width, n_out),
        }


def init_cnn_parameters(
    config: ModelConfig, input_shape: Sequence[int], n_out: int, *, generator: torch.Generator
) -> dict:
    """Initial state dict of :class:`CNN` drawn from ``generator``.

    Same schemes and draw order as :func:`init_mlp_parameters`; convolution
    weights have shape (channels, C_in, 3, 3) and fan_in C_in * 9.
    """
    _check_model_config(config)
    _check_positive("n_out", n_out)
    shape = _check_image_shape(input_shape)
    skeleton = nn.ModuleDict(_cnn_children(config, shape, n_out))
    return _init_state(skeleton, config, _generator(None, generator))


class CNN(nn.Module):
    """Convolutional net of docs/science.md#networks (the paper's CIFAR-10 model at 3x10x10).

    ``input_bn`` (BatchNorm2d) -> ``blocks[i]`` = Conv3x3(channels, padding 1)
    -> BatchNorm2d -> LeakyReLU(alpha) -> MaxPool2d(2) -> Upsample(x2, nearest)
    -> Dropout(p), i = 0..depth-2 (7 blocks for depth 8) -> flatten ->
    ``head`` = Linear(channels * H * W, n_out).

    Parameters
    ----------
    config : ModelConfig
        Uses ``depth``, ``channels``, ``slope``, ``dropout``, ``batchnorm`` and
        the init fields; ``width`` is ignored.
    input_shape : tuple of int
        (C, H, W) of one image; H and W must be even.
    n_out : int
        Number of classes.
    seed, generator, state :
        As for :class:`MLP`.

    Its ``nn.Dropout`` layers act in training mode only when the module is
    trained by hand; the package's trainer applies dropout itself, with masks
    from each run's own random stream (:mod:`dnn_spring.train._group_cnn`).
    """

    logits_layer = "head"

    def __init__(self, config: ModelConfig, input_shape, n_out: int, *, seed=None, generator=None,
                 state=None):
        super().__init__()
        _check_model_config(config)
        self.config = config
        self.input_shape = _check_image_shape(input_shape)
        self.n_out = _check_positive("n_out", n_out)
        for name, child in _cnn_children(config, self.input_shape, n_out).items():
            self.add_module(name, child)
        if state is None:
            gen = _generator(seed, generator)
            state = init_cnn_parameters(config, self.input_shape, n_out, generator=gen)
        self.to_empty(device=state["head.weight"].device)
        self.load_state_dict(state, strict=True)

    def load_curve_layers(self) -> list:
        """Module names of the load-curve points: input, every pooling, logits."""
        return ["input_bn", *(f"blocks.{i}.pool" for i in range(len(self.blocks))), "head"]

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape (N, n_out) for images of shape (N, C, H, W)."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"input must have shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )
        x = self.input_bn(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x.flatten(1))


# --------------------------------------------------------------------------- factory


def build_model(config: ModelConfig, input_shape: Sequence[int], n_classes: int, *, seed: int):
    """Build the network named by ``config.arch`` for data of ``input_shape``.

    Parameters
    ----------
    config : ModelConfig
    input_shape : tuple of int
        Shape of one sample: (C, H, W) for images or (features,).  The MLP
        flattens it; the CNN needs (C, H, W) with even H and W.
    n_classes : int
    seed : int
        Seed of the initialisation (the run seed).

    Returns
    -------
    MLP or CNN
        On the CPU, in training mode.
    """
    _check_model_config(config)
    shape = tuple(int(s) for s in input_shape)
    if config.arch == "mlp":
        return MLP(config, math.prod(shape), n_classes, seed=seed)
    if config.arch == "cnn":
        return CNN(config, shape, n_classes, seed=seed)
    raise ValueError(choice_problem("arch", config.arch, ARCHS))
