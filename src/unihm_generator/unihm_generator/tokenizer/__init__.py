"""Unified hand tokenizer: one shared codebook, an encoder/decoder pair per hand type.

Pure library (numpy + torch, no ROS)::

    from unihm_generator.tokenizer import load_tokenizer
    tok = load_tokenizer()                      # the default checkpoint shipped with the package
    ids = tok.encode("shadow_right", q)         # (T, 24) joints -> (ceil(T / chunk),) token ids
    q_x = tok.decode("xhand_right", ids, num_frames=len(q))   # the same motion on the XHand
"""

from unihm_generator.tokenizer.config import HandSpec, TokenizerConfig, TokenizerError
from unihm_generator.tokenizer.io import default_tokenizer_dir, load_tokenizer, save_tokenizer
from unihm_generator.tokenizer.model import HandTokenizer, nearest_codes, quantize

__all__ = ["HandSpec", "HandTokenizer", "TokenizerConfig", "TokenizerError",
           "default_tokenizer_dir", "load_tokenizer", "nearest_codes", "quantize",
           "save_tokenizer"]
