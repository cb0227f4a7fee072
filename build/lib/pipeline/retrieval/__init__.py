"""The retrieval stage: a persistent index, the Naive Bayes query-likelihood stage, hybrid
ranking and search."""
