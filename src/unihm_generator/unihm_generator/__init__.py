"""Hand tokenizer and language-conditioned generator of UniHM."""
