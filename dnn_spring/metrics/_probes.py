"""Linear and logistic probes of a layer's features (docs/science.md#separation-fuzziness, optional companions)."""

from __future__ import annotations

import warnings

import torch

from dnn_spring.metrics._features import as_features, as_labels, check_not_empty

__all__ = ["probe_stats"]


def _linear_probe(x: torch.Tensor, y: torch.Tensor, n_classes: int) -> float:
    """Relative residual ‖Y_c − X_c β‖² / ‖Y_c‖² of one-hot labels on the features."""
    x = x - x.mean(0)
    onehot = torch.nn.functional.one_hot(y, n_classes).to(torch.float64)
    onehot = onehot - onehot.mean(0)
    beta = torch.linalg.lstsq(x, onehot, rcond=None, driver="gelsd").solution
    resid = onehot - x @ beta
    return float((resid**2).sum() / (onehot**2).sum())


def _logistic_probe(x: torch.Tensor, y: torch.Tensor) -> float:
    """Training log-loss of an L2 logistic regression on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.preprocessing import StandardScaler

    xs = StandardScaler().fit_transform(x.cpu().numpy())
    labels = y.cpu().numpy()
    clf = LogisticRegression(max_iter=500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(xs, labels)
    return float(log_loss(labels, clf.predict_proba(xs), labels=clf.classes_))


def probe_stats(features, labels) -> dict:
    """The linear- and logistic-regression probes of docs/science.md#separation-fuzziness on in-memory features.

    Parameters
    ----------
    features : array-like of shape (n_samples, ...)
    labels : array-like of shape (n_samples,)

    Returns
    -------
    dict
        ``lin_residual`` (relative least-squares residual of centred one-hot
        labels, 0 = perfectly linearly decodable, 1 = nothing decodable) and
        ``logistic_loss`` (training log-loss of a logistic regression).
    """
    check_not_empty(features)
    x = as_features(features)
    y = as_labels(labels, x.shape[0], x.device)
    _, y = torch.unique(y, return_inverse=True)
    return {
        "lin_residual": _linear_probe(x, y, int(y.max()) + 1),
        "logistic_loss": _logistic_probe(x, y),
    }
