"""Topics on the local backend: Braintrust's four-step pipeline (its docs, "Topics").

1. `narrative`: one bounded, redacted text per trace from its root and child spans;
2. `summarize`: a short facet summary per trace (Task, Sentiment, Issues or a custom facet) from
   an OpenAI-compatible model (the llm labeler's client), the coding agent (label export/apply),
   or the documented deterministic fallback (the user's request text);
3. `cluster`: vectors (the model's embeddings, else TF-IDF + LSA), k-means with k chosen by the
   silhouette score, noise left unassigned, topic names from the model or from top terms;
4. `run`: classify every trace in the window to its nearest topic with a distance, and store
   `facets.<Name>` and `classifications.<Name>` on the root span so Braintrust's documented SQL
   reads them. `remote` drives Braintrust's own Topics through the real `bt topics` CLI.
"""
