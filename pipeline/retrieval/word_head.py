"""Words for items without text: a softmax head from the shared embedding space to words.

Trained on the training captions: each training item's embeddings (its caption's and its
content's, which the shared space puts close together) → the word distribution of its
captions. An indexed photo or sound then contributes its top predicted words to the Naive
Bayes stage, with counts proportional to their probability, so a text query reaches it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import sparse

from pipeline.io_utils import atomic_path

# Training makes at most this many bytes of targets dense at once (rows × vocabulary × 4),
# predicting this many rows: memory is bounded however many items there are.
TRAIN_TARGET_BYTES = 256 * 2**20
PREDICT_ROWS = 1024


class WordHead:
    """Multinomial logistic regression: unit vector [dim] → p(word) over ``vocabulary``.

    Args:
        vocabulary: the output words.
        weights: [dim, len(vocabulary)]; bias: [len(vocabulary)] (random start when None).

    Example:
        >>> head = WordHead.train(embeddings, word_counts, vocabulary)
        >>> words = head.predicted_words(image_vectors, top=10, total=10.0)
    """

    def __init__(self, vocabulary: list[str], weights: np.ndarray, bias: np.ndarray):
        self.vocabulary, self.weights, self.bias = (
            list(vocabulary),
            np.asarray(weights, np.float32),
            np.asarray(bias, np.float32),
        )

    @classmethod
    def train(
        cls,
        embeddings: np.ndarray,
        word_counts,
        vocabulary: list[str],
        epochs: int = 30,
        batch_size: int = 256,
        learning_rate: float = 1e-2,
        seed: int = 0,
    ) -> WordHead:
        """Fits on rows of ``embeddings`` [n, dim] and their ``word_counts`` [n, vocabulary]
        (dense or sparse; each row normalised to a distribution, empty rows left out). The
        targets stay sparse: each epoch's shuffled rows are made dense a part at a time, at
        most ``TRAIN_TARGET_BYTES`` of them, not items × the vocabulary at once."""
        import keras

        counts = sparse.csr_matrix(word_counts, dtype=np.float64)
        totals = np.asarray(counts.sum(axis=1)).ravel()
        keep = totals > 0
        if not keep.any():
            raise ValueError("no training text to learn words from")
        x = np.asarray(embeddings, np.float32)[keep]
        y = (sparse.diags(1.0 / totals[keep]) @ counts[keep]).astype(np.float32).tocsr()
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((x.shape[1],))
        # Unit vectors give small logits; a learned scale lets the softmax become peaked.
        dense = keras.layers.Dense(len(vocabulary), name="words")
        model = keras.Model(inputs, keras.layers.Activation("softmax")(dense(inputs)))
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="categorical_crossentropy")
        rows_at_once = max(batch_size, TRAIN_TARGET_BYTES // (4 * max(len(vocabulary), 1)))
        rng = np.random.default_rng(seed)
        for _ in range(epochs):
            shuffled = rng.permutation(len(x))
            for start in range(0, len(x), rows_at_once):
                rows = shuffled[start : start + rows_at_once]
                model.fit(x[rows], y[rows].toarray(), batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
        weights, bias = dense.get_weights()
        return cls(vocabulary, weights, bias)

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        logits = np.asarray(embeddings, np.float32) @ self.weights + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predicted_words(self, embeddings: np.ndarray, top: int = 10, total: float = 10.0) -> list[dict[str, float]]:
        """Per row, the ``top`` most probable words with counts proportional to their
        probability, summing to ``total`` (about one caption's worth of words). Rows are
        taken ``PREDICT_ROWS`` at a time."""
        embeddings = np.asarray(embeddings, np.float32)
        out = []
        for start in range(0, len(embeddings), PREDICT_ROWS):
            p = self.probabilities(embeddings[start : start + PREDICT_ROWS])
            for row in p:
                best = np.argsort(-row)[:top]
                mass = row[best].sum()
                out.append({self.vocabulary[j]: float(total * row[j] / mass) for j in best})
        return out

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, vocabulary=np.array(self.vocabulary, dtype=str), weights=self.weights, bias=self.bias)

    @classmethod
    def load(cls, path: str | Path) -> WordHead:
        with np.load(path, allow_pickle=False) as arrays:
            return cls(arrays["vocabulary"].tolist(), arrays["weights"], arrays["bias"])
