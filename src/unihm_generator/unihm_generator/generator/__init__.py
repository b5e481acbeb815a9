"""Language-conditioned generator: a Qwen3 causal LM that writes hand tokens (paper §3.3, C).

Pure library (numpy + torch + transformers, no ROS)::

    from unihm_generator.generator import GenerationSpec, Generator
    gen = Generator.load()                       # the checkpoint shipped with the package
    motion = gen.generate([GenerationSpec("pick up the mug", points, target,
                                          hands=["xhand_right", "allegro_right"])])[0]
    motion.wrist_poses, motion.joints["xhand_right"]

docs/generator.md describes the sequence layout, training and evaluation.
"""

from unihm_generator.generator.config import GeneratorConfig, GeneratorError
from unihm_generator.generator.io import default_generator_dir, load_generator, save_generator
from unihm_generator.generator.model import HandGenerator
from unihm_generator.generator.pipeline import GeneratedMotion, GenerationSpec, Generator
from unihm_generator.generator.train import mask_ratio, train_generator

__all__ = ["GeneratedMotion", "GenerationSpec", "Generator", "GeneratorConfig",
           "GeneratorError", "HandGenerator", "default_generator_dir", "load_generator",
           "mask_ratio", "save_generator", "train_generator"]
