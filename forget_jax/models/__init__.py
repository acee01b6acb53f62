"""Our Flax NNX LLaMA, GPT-2 and GPT-J with Hugging Face weights.

Uniform API of every model class (``Llama``, ``GPT2``, ``GPTJ``)::

    model = Llama(config, dtype=jnp.float32, param_dtype=jnp.float32, rngs=nnx.Rngs(0))
    h_BTD, hidden_states = model.encode(tokens, mask=None, positions=None,
                                        output_hidden_states=False)
    logits = model.logits(h)            # float32 [..., V]
    logits = model(tokens, mask=None, positions=None)

Loading real weights::

    lm = load_model("smollm2-135m", dtype="float32")   # LoadedModel(model, tokenizer, ...)
"""

from forget_jax.models.convert import ModelLoadError, flax_to_hf, hf_to_flax, model_from_params
from forget_jax.models.gpt2 import GPT2
from forget_jax.models.gptj import GPTJ
from forget_jax.models.llama import Llama
from forget_jax.models.registry import (
    NAMED_MODELS,
    PRECISIONS,
    LoadedModel,
    abstract_model,
    build_model,
    config_from_hf,
    load_model,
    model_config,
    precision_kwargs,
)

__all__ = [
    "GPT2",
    "GPTJ",
    "NAMED_MODELS",
    "PRECISIONS",
    "Llama",
    "LoadedModel",
    "ModelLoadError",
    "abstract_model",
    "build_model",
    "config_from_hf",
    "flax_to_hf",
    "hf_to_flax",
    "load_model",
    "model_config",
    "model_from_params",
    "precision_kwargs",
]
