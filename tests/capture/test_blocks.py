"""transformer_blocks: the default points of a transformer's load curve."""

import pytest
import torch
import torchvision
from torch import nn

from dnn_spring.capture._blocks import transformer_blocks


def _quiet_config(cls, **kw):
    import transformers

    transformers.logging.set_verbosity_error()
    return cls(**kw)


def test_torch_encoder_and_torchvision_vit():
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, batch_first=True), 3,
                                enable_nested_tensor=False)
    assert transformer_blocks(enc) == ["layers.0", "layers.1", "layers.2"]
    vit = torchvision.models.VisionTransformer(image_size=28, patch_size=7, num_layers=2,
                                               num_heads=2, hidden_dim=16, mlp_dim=32)
    assert transformer_blocks(vit) == ["encoder.layers.encoder_layer_0",
                                       "encoder.layers.encoder_layer_1"]


def test_hugging_face_models():
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, T5Config, T5Model

    gpt2 = GPT2LMHeadModel(_quiet_config(GPT2Config, n_layer=2, n_embd=16, n_head=2,
                                         vocab_size=30, n_positions=8))
    assert transformer_blocks(gpt2) == ["transformer.h.0", "transformer.h.1"]
    bert = BertModel(_quiet_config(BertConfig, num_hidden_layers=2, hidden_size=16,
                                   num_attention_heads=2, intermediate_size=32, vocab_size=30))
    assert transformer_blocks(bert) == ["encoder.layer.0", "encoder.layer.1"]
    t5 = T5Model(_quiet_config(T5Config, num_layers=1, num_decoder_layers=2, d_model=16, d_kv=8,
                               d_ff=32, num_heads=2, vocab_size=30))
    # encoder then decoder; the layer lists inside each block are not stacks of blocks
    assert transformer_blocks(t5) == ["encoder.block.0", "decoder.block.0", "decoder.block.1"]


class _Loose(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 16)
        self.first = nn.TransformerEncoderLayer(16, 2, batch_first=True)
        self.second = nn.TransformerEncoderLayer(16, 2, batch_first=True)

    def forward(self, x):
        return self.second(self.first(self.embed(x)))


def test_block_types_without_a_stack_and_the_error():
    assert transformer_blocks(_Loose()) == ["first", "second"]
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match="no transformer blocks in Sequential.*pass `layers=`"):
        transformer_blocks(mlp)
    mixed = nn.Module()
    mixed.layers = nn.Sequential(nn.Linear(4, 8), nn.ReLU())  # not one class: not a stack
    with pytest.raises(ValueError, match="no transformer blocks"):
        transformer_blocks(mixed)
    with pytest.raises(TypeError, match="`model` must be an nn.Module"):
        transformer_blocks(torch.zeros(3))
