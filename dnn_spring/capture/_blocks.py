"""Which modules of a transformer are its blocks: :func:`transformer_blocks`.

The load curve of a transformer is measured at the output of each block (the
residual stream after the block).  Libraries name their block stacks in a
few ways (``transformer.h`` in GPT-2, ``encoder.layer`` in BERT,
``model.layers`` in Llama, ``encoder.layers`` in torchvision's
``VisionTransformer`` and in ``nn.TransformerEncoder``, ``encoder.block`` in
T5), so the rule below reads the structure rather than a list of classes.
"""

from __future__ import annotations

from torch import nn

__all__ = ["transformer_blocks", "STACK_NAMES", "BLOCK_TYPES"]

#: Last part of the name of a module list that holds a model's blocks.
STACK_NAMES = ("h", "layer", "layers", "block", "blocks")
#: Block classes recognised when no stack is named as above.
BLOCK_TYPES = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


def _is_stack(name: str, module: nn.Module) -> bool:
    if not isinstance(module, (nn.ModuleList, nn.Sequential)):
        return False
    if name.rpartition(".")[2] not in STACK_NAMES:
        return False
    kinds = {type(child) for child in module.children()}
    return len(kinds) == 1


def _outermost(names: list) -> list:
    """Drop every name that lies inside an earlier one (a stack nested in a block)."""
    kept = []
    for name in names:
        if not any(name.startswith(outer + ".") for outer in kept):
            kept.append(name)
    return kept


def transformer_blocks(model: nn.Module) -> list:
    """Names of the transformer blocks of ``model``, in registration order.

    The rule, in order:

    1. A *stack* is an ``nn.ModuleList`` or ``nn.Sequential`` whose name ends
       in one of :data:`STACK_NAMES` (``h``, ``layer``, ``layers``,
       ``block``, ``blocks``) and whose children are all of one class.  The
       blocks are the children of every stack that is not itself inside
       another stack (an encoder–decoder model gives the encoder's blocks,
       then the decoder's).
    2. Without a stack: every module that is an instance of
       :data:`BLOCK_TYPES` (``nn.TransformerEncoderLayer``,
       ``nn.TransformerDecoderLayer``), outermost only.

    Parameters
    ----------
    model : nn.Module

    Returns
    -------
    list of str
        Module names (nested names with dots), for ``layers=`` of
        :func:`~dnn_spring.capture.load_curve`.

    Raises
    ------
    ValueError
        Neither rule finds a block; the message says how to choose layers.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    modules = [(name, module) for name, module in model.named_modules() if name]
    stacks = _outermost([name for name, module in modules if _is_stack(name, module)])
    if stacks:
        return [f"{stack}.{child}" for stack in stacks
                for child, _ in dict(modules)[stack].named_children()]
    typed = _outermost([name for name, module in modules if isinstance(module, BLOCK_TYPES)])
    if typed:
        return typed
    raise ValueError(
        f"found no transformer blocks in {type(model).__name__}: no nn.ModuleList or "
        f"nn.Sequential of one class named {'/'.join(STACK_NAMES)} and no "
        "nn.TransformerEncoderLayer; pass `layers=` (module names, a block class such as "
        "GPT2Block, or a callable); list the names with dnn_spring.list_layers(model)")
