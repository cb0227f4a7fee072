"""Contrastive losses between two batches of unit vectors whose rows are paired.

Row i of ``a`` and row i of ``b`` belong together. When ``ids`` is given, rows with the same
id are all positives for each other (two captions of one image in one batch are not
negatives).
"""

from __future__ import annotations

from keras import ops


def _positives(n, ids):
    if ids is None:
        return ops.eye(n)
    return ops.cast(ops.equal(ids[:, None], ids[None, :]), "float32")


def infonce_loss(a, b, scale, ids=None):
    """Symmetric InfoNCE: mean of the cross-entropies a→b and b→a of softmax(scale · a bᵀ).

    With several positives in a row, the target spreads evenly over them.
    """
    logits = scale * ops.matmul(a, ops.transpose(b))
    positives = _positives(ops.shape(a)[0], ids)
    targets = positives / ops.sum(positives, axis=1, keepdims=True)
    a_to_b = -ops.sum(targets * ops.log_softmax(logits, axis=1), axis=1)
    b_to_a = -ops.sum(ops.transpose(targets) * ops.log_softmax(ops.transpose(logits), axis=1), axis=1)
    return (ops.mean(a_to_b) + ops.mean(b_to_a)) / 2.0


def vse_hinge_loss(a, b, margin, ids=None, hardest=True):
    """VSE++ max-violation hinge: for each anchor, the hardest negative in the batch.

    loss = mean_i [ max_j≠i (margin + s_ij - s_ii)_+ + max_j≠i (margin + s_ji - s_ii)_+ ]

    With ``hardest=False``, the sum over all negatives instead of the max (the hinge of VSE,
    Kiros et al.): every violating negative pushes, which gets a model out of the collapsed
    start where the hardest negative is as close as the positive and the max gives no signal.
    """
    sims = ops.matmul(a, ops.transpose(b))
    diagonal = ops.diagonal(sims)
    negatives = 1.0 - _positives(ops.shape(a)[0], ids)
    cost_b = ops.relu(margin + sims - diagonal[:, None]) * negatives  # a_i against wrong b_j
    cost_a = ops.relu(margin + sims - diagonal[None, :]) * negatives  # b_j against wrong a_i
    if not hardest:
        return ops.mean(ops.sum(cost_b, axis=1) + ops.sum(cost_a, axis=0))
    return ops.mean(ops.max(cost_b, axis=1) + ops.max(cost_a, axis=0))
