"""From any ``nn.Module`` to its load curve.

Which points of a model are measured (its layers, or a transformer's blocks),
the forward hooks that take their outputs, the pooling of tokens and
positions into one feature row per sample, the input batches, the load curve
itself, the tracker that measures it while a model trains, and the stress map
(:func:`diagnose`) built on it.
"""

from dnn_spring._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "list_layers": "dnn_spring.capture._load_curve",
    "load_curve": "dnn_spring.capture._load_curve",
    "transformer_blocks": "dnn_spring.capture._blocks",
    "LoadCurveTracker": "dnn_spring.capture._tracker",
    "diagnose": "dnn_spring.capture._diagnose",
    "Diagnosis": "dnn_spring.capture._diagnose",
})
