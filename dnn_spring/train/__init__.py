"""The paper's networks trained: one run, or a group of runs stacked into one network.

A run is described by a :class:`RunConfig` (model, data, training) and ends in
a record.  A *group* trains many configs of one shape at once, each member
with its own random streams, so that a member's record is the same alone or
in any group.  Here too: the paper's models and data sets, the optimisers and
kernels of a group, CUDA graphs, the stop rules, checkpoints, polite stops,
and the reproducible mode.
"""

from dnn_spring._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "RunConfig": "dnn_spring.train._config",
    "ModelConfig": "dnn_spring.train._config",
    "DataConfig": "dnn_spring.train._config",
    "TrainConfig": "dnn_spring.train._config",
    "Dataset": "dnn_spring.train._data",
    "load_dataset": "dnn_spring.train._data",
    "MLP": "dnn_spring.train._models",
    "CNN": "dnn_spring.train._models",
    "build_model": "dnn_spring.train._models",
    "init_mlp_parameters": "dnn_spring.train._models",
    "init_cnn_parameters": "dnn_spring.train._models",
    "train_run": "dnn_spring.train._run",
    "train_group": "dnn_spring.train._group",
})
