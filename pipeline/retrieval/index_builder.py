"""Builds an index from a trained run and a dataset: every item embedded, its words counted.

An item's vector is everything it has through the fusion network: its image, its sound and,
when the model fuses text (``fusion.text``), its words (the mean of its captions' vectors);
without a fused text, an item with text only gets the mean of its captions' vectors. Its words for the Naive Bayes stage are its captions' words, or, for an item without text,
the words the word head predicts from its vector.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from pipeline.data.input_pipeline import select_items
from pipeline.data.manifest import Manifest
from pipeline.modalities import file_modalities
from pipeline.progress import progress
from pipeline.records import IndexModel, IndexRecord, RankingChoice
from pipeline.retrieval.naive_bayes import NaiveBayesScorer
from pipeline.retrieval.word_head import WordHead
from pipeline.run_artifacts import run_reference

log = logging.getLogger(__name__)

# An item without text gets the word head's PREDICTED_WORDS most probable words, counts
# proportional to their probability and summing to about one caption (PREDICTED_TOTAL); with
# NB_ALPHA, the settings that did best on Flickr8k dev (docs/search.md has the figures).
PREDICTED_WORDS = 200
PREDICTED_TOTAL = 10.0
NB_ALPHA = 0.001


@dataclasses.dataclass
class EmbeddedItems:
    """The items of a dataset as an index holds them."""

    vectors: np.ndarray  # [items, dim]
    metadata: pd.DataFrame  # index_store.metadata_columns()
    texts: list[str]  # all of an item's captions joined ("" when none)
    caption_vectors: np.ndarray  # [captions, dim], for training the word head
    caption_owner: np.ndarray  # item index of each caption vector
    captions: list[str] = dataclasses.field(default_factory=list)  # the text of each caption vector
    # [items, dim]: the vectors without the items' own words, for whatever is measured with
    # those words as queries (the word head, the choice of ranking); None = ``vectors``.
    content_vectors: np.ndarray | None = None

    @property
    def without_words(self) -> np.ndarray:
        return self.vectors if self.content_vectors is None else self.content_vectors


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclasses.dataclass
class CombinedVectors:
    """Items' vectors from their modalities' vectors (``combine_item_vectors``)."""

    vectors: np.ndarray  # [items, dim]: what the index holds
    content_vectors: np.ndarray  # [items, dim]: without the items' own words
    has_content: np.ndarray  # [items] bool: some file of the item was embedded
    text_only: np.ndarray  # [items] bool: captions and no file

    @property
    def usable(self) -> np.ndarray:
        return self.has_content | self.text_only


def combine_item_vectors(
    model,
    per_modality: dict[str, np.ndarray],
    masks: dict[str, np.ndarray],
    caption_vectors: np.ndarray,
    caption_owner: np.ndarray,
    n: int,
    fuse_text: bool = True,
) -> CombinedVectors:
    """``n`` items' vectors through the model's fusion network: ``per_modality[m]`` [n, dim]
    with ``masks[m]`` [n] (1 where the item has m), and its captions' vectors (``caption_owner``:
    each one's item). The in-process index and the Beam pipeline (``pipeline embed``) both
    call this, so their vectors are the same."""
    from pipeline.evaluation.embedder import fuse_items

    dim = model.experiment.embedding_dim
    content = [m for m in per_modality]
    has_content = np.zeros(n, bool)
    if content:
        has_content = np.max(np.stack([masks[m] for m in content], 1), axis=1) > 0
    has_text = np.bincount(caption_owner, minlength=n) > 0 if len(caption_owner) else np.zeros(n, bool)
    mean_text = np.zeros((n, dim), np.float32)
    if len(caption_owner):
        np.add.at(mean_text, caption_owner, caption_vectors)
        mean_text = _l2(mean_text)
    text_only = ~has_content & has_text
    content_vectors = np.zeros((n, dim), np.float32)
    if content:
        content_vectors = fuse_items(model, per_modality, masks) * has_content[:, None]
    content_vectors[text_only] = mean_text[text_only]
    vectors = content_vectors
    if fuse_text and "text" in model.fused and has_text.any():
        with_words = {**per_modality, "text": mean_text}
        vectors = fuse_items(model, with_words, {**masks, "text": has_text.astype(np.float32)})
    return CombinedVectors(vectors, content_vectors, has_content, text_only)


def item_metadata(item_ids, splits, labels, file_of: dict, masks: dict, text_only, captions) -> pd.DataFrame:
    """The index's metadata rows of items: ``file_of[m]`` each item's file of modality m (""
    when none), ``masks[m]`` where it was embedded, ``captions`` each item's list of captions."""
    content = list(file_of)
    n = len(item_ids)
    modality = ["+".join(m for m in content if masks[m][i] > 0) or ("text" if text_only[i] else "") for i in range(n)]
    path = [next((file_of[m][i] for m in content if file_of[m][i]), "") for i in range(n)]
    return pd.DataFrame(
        {
            "item_id": list(item_ids),
            "modality": modality,
            "split": list(splits),
            "label": list(labels),
            "path": path,
            **{f"{m.name}_path": list(file_of.get(m.name, [""] * n)) for m in file_modalities()},
            "caption": [texts[0] if texts else "" for texts in captions],
            "words_from": ["captions" if texts else "" for texts in captions],
        }
    )


def embed_items(
    encoder, manifest: Manifest, split: str | None = None, batch_size: int = 64, fuse_text: bool = True
) -> EmbeddedItems:
    """Embeds every usable item of ``split`` (all splits when None) of ``manifest``.
    ``fuse_text=False`` keeps the items' words out of their vectors (when the captions are
    the queries, as in an evaluation).

    Files that cannot be read are left out of their item (logged, with a count), as in training;
    an item left with neither content nor text is skipped.
    """
    model = encoder.model
    available = manifest.modalities()
    content = [m for m in model.content if m in available]
    use = (["text"] if "text" in available else []) + content
    selection = select_items(manifest, split, use, required=())
    items = selection.frame
    split_of = manifest.frame.groupby("item_id", sort=False)["split"].first()
    dim = model.experiment.embedding_dim
    n = len(items)
    per_modality, masks = {}, {}
    for m in content:
        has = (items[m] != "").to_numpy()
        files = [manifest.resolve(p) for p in items[m][has]]
        vectors = np.zeros((n, dim), np.float32)
        if files:
            bar = progress(total=len(files), desc=f"embedding {m}", unit=m)
            chunks = []
            for start in range(0, len(files), 512):
                chunks.append(encoder.encode_files(files[start : start + 512], m, batch_size=batch_size))
                bar.update(len(chunks[-1]))
            bar.close()
            vectors[has] = np.concatenate(chunks)
        per_modality[m], masks[m] = vectors, has.astype(np.float32)

    captions = [list(texts) for texts in items["text"]] if "text" in items else [[] for _ in range(n)]
    flat = [c for texts in captions for c in texts]
    owner = np.array([i for i, texts in enumerate(captions) for _ in texts], np.int64)
    caption_vectors = encoder.encode_text(flat) if flat else np.zeros((0, dim), np.float32)
    combined = combine_item_vectors(model, per_modality, masks, caption_vectors, owner, n, fuse_text)
    vectors, content_vectors = combined.vectors, combined.content_vectors
    has_content, text_only = combined.has_content, combined.text_only
    usable = has_content | text_only
    if (~usable).any():
        log.warning(
            "%s: %d item(s) have neither a readable file nor a caption and are not indexed (e.g. %s)",
            manifest.root.name,
            int((~usable).sum()),
            ", ".join(items["item_id"][~usable].astype(str)[:3]),
        )

    # Absolute: items added later may come from another dataset folder than the index's.
    file_of = {m: [os.path.abspath(manifest.resolve(p)) if p else "" for p in items[m]] for m in content}
    metadata = item_metadata(
        items["item_id"].astype(str).to_numpy(),
        items["item_id"].map(split_of).fillna("").to_numpy(),
        items["label"].fillna("").astype(str).to_numpy(),
        file_of,
        masks,
        text_only,
        captions,
    )
    keep = np.flatnonzero(usable)
    remap = -np.ones(n, np.int64)
    remap[keep] = np.arange(len(keep))
    kept_captions = remap[owner] >= 0 if len(owner) else np.zeros(0, bool)
    return EmbeddedItems(
        vectors[keep],
        metadata.iloc[keep].reset_index(drop=True),
        [" ".join(captions[i]) for i in keep],
        caption_vectors[kept_captions],
        remap[owner[kept_captions]] if len(owner) else owner,
        [c for c, k in zip(flat, kept_captions) if k],
        content_vectors[keep],
    )


def lexical_scorer(run_vocabulary: list[str], texts: list[str], alpha: float) -> NaiveBayesScorer:
    """An unfitted NB stage over the run's words, then any new words of the indexed texts.
    Padding, markers ("[UNK]", a WordPiece vocabulary's "[CLS]", ...) and pieces inside a word
    ("##s") are left out: the stage counts whole words."""
    words = [w for w in run_vocabulary if w and not (w[0] == "[" and w[-1] == "]") and not w.startswith("##")]
    scorer = NaiveBayesScorer(words, alpha)
    scorer.extend_vocabulary(texts)
    return scorer


def train_word_head(
    embedded: EmbeddedItems, scorer: NaiveBayesScorer, train_mask: np.ndarray, seed: int = 0
) -> WordHead | None:
    """The head that predicts an item's words from its vector, trained on the items of
    ``train_mask`` that have captions: their content vectors and their caption vectors both
    map to the word distribution of the item's captions."""
    counts = scorer.count_matrix(embedded.texts)
    has_words = np.asarray(counts.sum(axis=1)).ravel() > 0
    rows = np.flatnonzero(train_mask & has_words)
    if len(rows) == 0:
        return None
    caption_rows = np.flatnonzero(np.isin(embedded.caption_owner, rows))
    x = np.concatenate([embedded.without_words[rows], embedded.caption_vectors[caption_rows]])
    y = sparse.vstack([counts[rows], counts[embedded.caption_owner[caption_rows]]])
    log.info("word head: training on %d items and %d captions", len(rows), len(caption_rows))
    return WordHead.train(x, y, scorer.vocabulary, seed=seed)


def item_word_counts(
    embedded: EmbeddedItems,
    scorer: NaiveBayesScorer,
    head: WordHead | None,
    withhold_captions: bool = False,
    top: int = PREDICTED_WORDS,
) -> tuple[sparse.csr_matrix, list[str]]:
    """Word counts per item for the NB stage, and where each item's words came from."""
    texts = ["" if withhold_captions else t for t in embedded.texts]
    counts = scorer.count_matrix(texts)
    source = ["captions" if t.strip() else "" for t in texts]
    without = [i for i, t in enumerate(texts) if not t.strip()]
    if head is not None and without:
        predicted = head.predicted_words(embedded.without_words[without], top=top, total=PREDICTED_TOTAL)
        rows, columns, values = [], [], []
        for i, words in zip(without, predicted):
            for word, count in words.items():
                rows.append(i)
                columns.append(scorer.word_index[word])
                values.append(count)
            source[i] = "predicted"
        # Those items' rows are empty (they have no text): their predicted words are all they hold.
        counts = counts + sparse.csr_matrix((values, (rows, columns)), shape=counts.shape)
    return counts.tocsr(), source


def _lexical_stage(
    embedded: EmbeddedItems,
    run_vocabulary: list[str],
    train_mask: np.ndarray,
    alpha: float,
    withhold_captions: bool,
    seed: int,
):
    scorer = lexical_scorer(run_vocabulary, [] if withhold_captions else embedded.texts, alpha)
    head = train_word_head(embedded, scorer, train_mask, seed=seed)
    counts, source = item_word_counts(embedded, scorer, head, withhold_captions)
    scorer.fit(counts)
    return scorer, head, source


def subset(embedded: EmbeddedItems, mask: np.ndarray) -> EmbeddedItems:
    """The items where ``mask`` is true, with their captions."""
    rows = np.flatnonzero(mask)
    remap = -np.ones(len(mask), np.int64)
    remap[rows] = np.arange(len(rows))
    keep = remap[embedded.caption_owner] >= 0
    return EmbeddedItems(
        embedded.vectors[rows],
        embedded.metadata.iloc[rows].reset_index(drop=True),
        [embedded.texts[i] for i in rows],
        embedded.caption_vectors[keep],
        remap[embedded.caption_owner[keep]],
        [c for c, k in zip(embedded.captions, keep) if k],
        embedded.without_words[rows],
    )


def choose_ranking(
    embedded: EmbeddedItems,
    run_vocabulary: list[str],
    alpha: float,
    seed: int,
    train_split: str = "train",
    dev_split: str = "dev",
) -> RankingChoice:
    """The default ranking of text queries for this data: dense, unless a hybrid measures
    better on the dev items' held-out captions (ranking_choice); ``why`` holds the figures."""
    split = embedded.metadata["split"].to_numpy()
    has_content = (embedded.metadata["modality"] != "text").to_numpy()
    has_captions = np.bincount(embedded.caption_owner, minlength=len(split)) > 0
    train, dev = (split == train_split) & has_captions, (split == dev_split) & has_captions & has_content
    if train.sum() < 10 or dev.sum() < 10:
        return RankingChoice(
            "dense", 1.0, f"no {train_split} and {dev_split} items with captions to measure a hybrid on"
        )
    from pipeline.retrieval.ranking_choice import compare_rankings

    try:
        result = compare_rankings(
            subset(embedded, train), subset(embedded, dev), run_vocabulary, alpha, PREDICTED_WORDS, seed
        )
    except ValueError as error:
        return RankingChoice("dense", 1.0, str(error))
    held = {m: round(r["held_out"]["rsum"], 1) for m, r in result["rows"].items()}
    log.info(
        "ranking of text queries, measured on %d %s items (held-out text->item rsum): %s; chosen: %s",
        result["items"],
        dev_split,
        held,
        result["choice"]["method"],
    )
    choice = result["choice"]
    why = f"held-out text->item rsum on {result['items']} {dev_split} items: {held}"
    # "nb" alone has no dense weight (None); the record keeps the neutral 0.5 a query could override.
    weight = choice.get("weight")
    return RankingChoice(choice["method"], 0.5 if weight is None else float(weight), why)


def build_index(
    encoder,
    manifest: Manifest,
    name: str,
    kind: str = "exact",
    split: str | None = None,
    params: dict | None = None,
    ranking: str | None = None,
    weight: float | None = None,
    alpha: float = NB_ALPHA,
    withhold_captions: bool = False,
    head_split: str = "train",
):
    """Embeds ``manifest`` (``split``, or all), fits the NB stage and its word head, and writes
    saved_models/index/<name> (or the folder ``name``) atomically. Returns the opened index.

    The word head trains on the items of ``head_split`` (all items with captions when the
    dataset has no such split). ``withhold_captions`` keeps the items' own captions out of the
    NB stage and out of the item vectors (when the captions are the queries, as in an evaluation). ``ranking`` None: the
    default ranking of text queries is measured (``choose_ranking``)."""
    from pipeline.retrieval.vector_index import index_kind

    index_kind(kind).preflight(dict(params or {}))
    embedded = embed_items(encoder, manifest, split, fuse_text=not withhold_captions)
    return write_embedded_index(
        encoder,
        embedded,
        str(manifest.root),
        name,
        kind=kind,
        split=split or "all",
        params=params,
        ranking=ranking,
        weight=weight,
        alpha=alpha,
        withhold_captions=withhold_captions,
        head_split=head_split,
    )


def write_embedded_index(
    encoder,
    embedded: EmbeddedItems,
    data: str,
    name: str,
    kind: str = "exact",
    split: str = "all",
    params: dict | None = None,
    ranking: str | None = None,
    weight: float | None = None,
    alpha: float = NB_ALPHA,
    withhold_captions: bool = False,
    head_split: str = "train",
):
    """The index over items already embedded: the NB stage and its word head fitted, the
    ranking chosen, every file written atomically (``build_index``'s second half)."""
    from pipeline import paths
    from pipeline.retrieval.index_store import SearchIndex, weights_fingerprint

    train_mask = (embedded.metadata["split"] == head_split).to_numpy()
    if not train_mask.any():
        train_mask = np.ones(len(embedded.metadata), bool)
    scorer, head, source = _lexical_stage(
        embedded, encoder.vectorizer.get_vocabulary(), train_mask, alpha, withhold_captions, encoder.config.seed
    )
    metadata = embedded.metadata.assign(words_from=source)
    if ranking is None:
        choice = choose_ranking(embedded, encoder.vectorizer.get_vocabulary(), alpha, encoder.config.seed, head_split)
    else:
        choice = RankingChoice(ranking, 0.5 if weight is None else weight, "given")
    record = IndexRecord(
        name=Path(name).name,
        model=IndexModel(run_reference(encoder.run_dir), weights_fingerprint(encoder.run_dir), encoder.config.name),
        data=data,
        split=split,
        withhold_captions=withhold_captions,
        ranking=choice,
        nb_alpha=alpha,
        kind=kind,
        params=dict(params or {}),
    )
    folder = Path(name) if ("/" in str(name) or Path(name).is_absolute()) else paths.index_dir(str(name))
    return SearchIndex.write(folder, record, embedded.vectors, metadata, scorer, head)


def build_index_from_shards(
    encoder, shards, name: str, kind: str = "exact", params: dict | None = None, ranking=None, weight=None
):
    """The index over the vectors ``pipeline embed`` wrote (``shards``: an ``EmbeddingShards``),
    read shard by shard; no item is embedded again. ``encoder`` must be the run that wrote them."""
    from pipeline.retrieval.index_store import weights_fingerprint
    from pipeline.retrieval.vector_index import index_kind

    shards.check_run(weights_fingerprint(encoder.run_dir))
    index_kind(kind).preflight(dict(params or {}))
    embedded = shards.embedded_items()
    return write_embedded_index(
        encoder,
        embedded,
        shards.record.data,
        name,
        kind=kind,
        params=params,
        ranking=ranking,
        weight=weight,
    )


def add_to_index(index, encoder, manifest: Manifest, split: str | None = None):
    """Embeds the items of ``manifest`` and appends them to ``index`` (new version, atomically)."""
    embedded = embed_items(encoder, manifest, split, fuse_text=not index.record.withhold_captions)
    naive_bayes = index.naive_bayes
    texts = ["" if index.record.withhold_captions else t for t in embedded.texts]
    scorer = NaiveBayesScorer(list(naive_bayes.vocabulary), naive_bayes.alpha)
    scorer.extend_vocabulary(texts)
    counts, source = item_word_counts(dataclasses.replace(embedded, texts=texts), scorer, index.word_head)
    metadata = embedded.metadata.assign(words_from=source)
    return index.added(embedded.vectors, metadata, counts, new_vocabulary=scorer.vocabulary)
