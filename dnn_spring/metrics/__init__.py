"""The numbers: how well a layer's features separate classes, and the loss curvature.

Separation fuzziness D and its companions (float64, streamable, summed across
ranks under ``torch.distributed``), the near-singular guard on the
between-class scatter, linear probes, the shape of a load curve (its slope v
and curvature c) and the Hessian's trace and top eigenvalue.  Nothing here
knows about models or training: the inputs are feature matrices and labels.
"""

from dnn_spring._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "separation_fuzziness": "dnn_spring.metrics._fuzziness",
    "separation_stats": "dnn_spring.metrics._fuzziness",
    "FuzzinessAccumulator": "dnn_spring.metrics._fuzziness",
    "probe_stats": "dnn_spring.metrics._probes",
    "load_shape": "dnn_spring.metrics._shape",
    "LoadShape": "dnn_spring.metrics._shape",
    "hessian_trace": "dnn_spring.metrics._hessian",
    "hessian_top_eigenvalue": "dnn_spring.metrics._hessian",
})
