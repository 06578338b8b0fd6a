"""Local stand-ins for the hub models that peft's generic tests name (the hub is unreachable here).

Each hub id maps to a tiny random model built from a config of the same architecture as the hub's
``tiny-random-*`` checkpoint (same class, same bias layout, same target module names), saved into a local
Hugging Face cache (``models--org--name/snapshots/<rev>/``). With ``HF_HUB_CACHE`` pointing there and
``HF_HUB_OFFLINE=1``, ``from_pretrained("peft-internal-testing/tiny-random-OPTForCausalLM")`` loads the
stand-in unchanged: the test files keep their hub ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import transformers as tf

# A small vocabulary: tests feed token ids < 10 and generate up to 15 tokens. Special tokens follow each
# architecture's real checkpoints. That matters: the inputs are the ids 1 and 2, an embedding's padding row is
# zero, and a zero input is left unchanged by any multiplicative adapter (HUT, (IA)³), so token 1 must not be the
# padding token of a model without biases (Llama, Mistral, Qwen, Gemma, GPT-J, T5).
VOCAB = 256
LLAMA_TOKENS = {"vocab_size": VOCAB, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None}
GPT_TOKENS = {"vocab_size": VOCAB, "bos_token_id": VOCAB - 1, "eos_token_id": VOCAB - 1}
BART_TOKENS = {"vocab_size": VOCAB, "bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2}  # BART, OPT, RoBERTa
DECODER = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "max_position_embeddings": 128}
ENCODER = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37,
           "max_position_embeddings": 130}


def _opt() -> tf.PretrainedConfig:
    return tf.OPTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=4, ffn_dim=4,
                        word_embed_proj_dim=16, max_position_embeddings=128,
                        **{**BART_TOKENS, "bos_token_id": 2})


def _gpt2() -> tf.PretrainedConfig:
    return tf.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128, **GPT_TOKENS)


def _gptj() -> tf.PretrainedConfig:
    return tf.GPTJConfig(n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=128, **GPT_TOKENS)


def _llama() -> tf.PretrainedConfig:
    return tf.LlamaConfig(**DECODER, **LLAMA_TOKENS)


def _mistral() -> tf.PretrainedConfig:
    return tf.MistralConfig(**DECODER, **LLAMA_TOKENS)


def _qwen2() -> tf.PretrainedConfig:
    return tf.Qwen2Config(**DECODER, **LLAMA_TOKENS)


def _qwen3() -> tf.PretrainedConfig:
    return tf.Qwen3Config(**DECODER, head_dim=4, **LLAMA_TOKENS)


def _gemma3() -> tf.PretrainedConfig:
    return tf.Gemma3TextConfig(**{**DECODER, "num_key_value_heads": 1}, head_dim=4, sliding_window=16,
                               vocab_size=VOCAB, pad_token_id=0, eos_token_id=1, bos_token_id=2)


def _t5() -> tf.PretrainedConfig:
    return tf.T5Config(d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
                       vocab_size=VOCAB, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)


def _bart() -> tf.PretrainedConfig:
    return tf.BartConfig(d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                         decoder_attention_heads=4, encoder_ffn_dim=8, decoder_ffn_dim=8, max_position_embeddings=128,
                         decoder_start_token_id=2, forced_eos_token_id=2, **BART_TOKENS)


def _bert() -> tf.PretrainedConfig:
    return tf.BertConfig(**ENCODER, vocab_size=VOCAB, pad_token_id=0)


def _roberta() -> tf.PretrainedConfig:
    return tf.RobertaConfig(**ENCODER, **BART_TOKENS)


def _deberta() -> tf.PretrainedConfig:
    return tf.DebertaConfig(**ENCODER, vocab_size=VOCAB, pad_token_id=0)


def _deberta_v2() -> tf.PretrainedConfig:
    return tf.DebertaV2Config(**ENCODER, vocab_size=VOCAB, pad_token_id=0)


# hub id -> (model class as the hub checkpoint stores it, config builder)
STANDINS: dict[str, tuple[type, Callable[[], tf.PretrainedConfig]]] = {
    "peft-internal-testing/tiny-random-OPTForCausalLM": (tf.OPTForCausalLM, _opt),
    "peft-internal-testing/tiny-random-GPT2LMHeadModel": (tf.GPT2LMHeadModel, _gpt2),
    "hf-internal-testing/tiny-random-gpt2": (tf.GPT2LMHeadModel, _gpt2),
    "peft-internal-testing/tiny-random-GPTJForCausalLM": (tf.GPTJForCausalLM, _gptj),
    "trl-internal-testing/tiny-random-LlamaForCausalLM": (tf.LlamaForCausalLM, _llama),
    "hf-internal-testing/tiny-random-MistralForCausalLM": (tf.MistralForCausalLM, _mistral),
    "peft-internal-testing/tiny-dummy-qwen2": (tf.Qwen2ForCausalLM, _qwen2),
    "trl-internal-testing/tiny-Qwen3ForCausalLM": (tf.Qwen3ForCausalLM, _qwen3),
    "hf-internal-testing/tiny-random-Gemma3ForCausalLM": (tf.Gemma3ForCausalLM, _gemma3),
    "peft-internal-testing/tiny-random-T5ForConditionalGeneration-calibrated": (tf.T5ForConditionalGeneration, _t5),
    "peft-internal-testing/tiny-random-BartForConditionalGeneration": (tf.BartForConditionalGeneration, _bart),
    "peft-internal-testing/tiny-random-BertModel": (tf.BertModel, _bert),
    "peft-internal-testing/tiny-random-RobertaModel": (tf.RobertaModel, _roberta),
    "peft-internal-testing/tiny-random-DebertaModel": (tf.DebertaModel, _deberta),
    "peft-internal-testing/tiny-random-DebertaV2Model": (tf.DebertaV2Model, _deberta_v2),
}


def _revision(model_id: str, config: tf.PretrainedConfig) -> str:
    """A fake commit hash (the cache layout needs one) that changes with the config and transformers' version."""
    return hashlib.sha1(f"{model_id}@{tf.__version__}:{config.to_json_string()}".encode()).hexdigest()


def write_hub_cache(cache: Path, model_ids: Iterable[str] = tuple(STANDINS)) -> list[str]:
    """Build the stand-ins whose config changed into ``cache`` (HF cache layout); returns the ids built now."""
    built = []
    for model_id in model_ids:
        model_cls, make_config = STANDINS[model_id]
        config = make_config()
        revision = _revision(model_id, config)
        org, name = model_id.split("/")
        repo = cache / f"models--{org}--{name}"
        snap = repo / "snapshots" / revision
        if (snap / "config.json").is_file() and (repo / "refs" / "main").read_text() == revision:
            continue
        torch.manual_seed(0)
        model_cls(config).save_pretrained(snap)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(revision)
        built.append(model_id)
    return built
