"""Files on disk, below the network: checkpoints (the Hugging Face layout, the sentence-transformers files),
the tokenizer, SentEval's data files, the authors' downloads, and text read and written safely."""
