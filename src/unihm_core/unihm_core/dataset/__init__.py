"""Hand-object interaction (HOI) data: the sequence format, synthesis, validation and importers.

The format (:mod:`.format`, :mod:`.index`) is what the tokenizer and the generator read; the rest
produces data in it. See docs/dataset.md.
"""
