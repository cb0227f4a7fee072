"""The optimizer training uses: AdamW, with its gradient clipping over the global batch."""

from __future__ import annotations

import keras
import tensorflow as tf


def _replicas() -> int:
    context = tf.distribute.get_replica_context()
    return 1 if context is None else int(context.num_replicas_in_sync)


class GlobalClipAdamW(keras.optimizers.AdamW):
    """``keras.optimizers.AdamW``, except that with several replicas (``tf.distribute``) the
    replicas' gradients are summed *before* ``clipnorm`` clips them. Keras clips each replica's
    share and sums afterwards, which clips differently from one process with the same global
    batch whenever a norm exceeds the limit. In a single process it is AdamW exactly.

    Args: those of ``keras.optimizers.AdamW``.

    Example:
        >>> optimizer = GlobalClipAdamW(1e-3, weight_decay=1e-4, clipnorm=5.0)
    """

    def _clip_gradients(self, grads):
        if _replicas() > 1:
            present = [i for i, g in enumerate(grads) if g is not None]
            summed = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, [grads[i] for i in present]
            )
            grads = list(grads)
            for i, g in zip(present, summed):
                grads[i] = g
        return super()._clip_gradients(grads)

    def _all_reduce_sum_gradients(self, grads_and_vars):
        if _replicas() > 1:
            return list(grads_and_vars)  # summed already, before clipping
        return super()._all_reduce_sum_gradients(grads_and_vars)
