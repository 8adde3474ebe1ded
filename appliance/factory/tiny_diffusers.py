"""The small seeded Stable Diffusion pipeline the default box ships, written as a real diffusers folder.

No real diffusion weights can be had offline, so the factory builds one from
diffusers' and transformers' own config classes at the sizes diffusers'
pipeline tests use, with weights drawn from a fixed seed, and a CLIP-style
byte-level BPE tokenizer trained here with ``tokenizers``. It is saved with
``save_pretrained`` in the layout of an SD-1.5 folder, so the build then
takes exactly the ``from_pretrained`` path a real folder takes. Its images
are noise: the weights were never trained.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

VOCAB_SIZE = 1000
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
TOKENIZER_TEXT = (
    "a photo of a cat sitting on a red chair in the garden. an oil painting of the sea at sunset, "
    "highly detailed, sharp focus. a watercolor of mountains and a lake with trees in autumn. "
    "portrait of an old man with a beard, studio lighting, 35mm film. a futuristic city at night with "
    "neon lights and rain. a bowl of fruit on a wooden table, still life. a dog running on the beach. "
    "an astronaut riding a horse on the moon, digital art. a small house in a snowy forest, cozy, warm "
    "light in the windows. a squirrel eating a burger. abstract shapes in blue, green, yellow and purple. "
    "the appliance draws pictures on the local network and nothing leaves the box. "
)


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP's printable stand-ins for the 256 byte values, in CLIP's vocab order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_clip_tokenizer(out: Path) -> None:
    """vocab.json, merges.txt and the configs of a CLIP tokenizer folder, with merges learned here.

    CLIP's vocab is the 256 byte symbols, the same with ``</w>``, the merges
    in order, then the two special tokens; this one follows that order at
    1000 entries, the vocab size of diffusers' test text encoder.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    base = _bytes_to_unicode()
    alphabet = base + [c + "</w>" for c in base]
    n_merges = VOCAB_SIZE - len(alphabet) - 2
    trainer_tok = Tokenizer(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
    trainer_tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                                   normalizers.Lowercase()])
    trainer_tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                             behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=4000, min_frequency=1, show_progress=False, end_of_word_suffix="</w>",
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    trainer_tok.train_from_iterator([TOKENIZER_TEXT] * 4, trainer)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in json.loads(trainer_tok.to_str())["model"]["merges"]]
    vocab = {tok: i for i, tok in enumerate(alphabet)}
    kept = []
    for a, b in merges:
        if len(kept) == n_merges:
            break
        if a in vocab and b in vocab and a + b not in vocab:
            vocab[a + b] = len(vocab)
            kept.append(f"{a} {b}")
    for extra in range(n_merges - len(kept)):  # a short corpus: pad with merges of byte pairs, still valid BPE
        a, b = base[extra % len(base)], base[(extra * 7 + 1) % len(base)] + "</w>"
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
            kept.append(f"{a} {b}")
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    if len(vocab) != VOCAB_SIZE:
        raise RuntimeError(f"tokenizer vocab came out at {len(vocab)} entries, not {VOCAB_SIZE}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(kept) + "\n")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
        "errors": "replace", "add_prefix_space": False, **special}, indent=2))


def build_tiny_pipeline(out: Path, seed: int, time_cond_proj_dim: int | None = None) -> Path:
    """Write the seeded pipeline to ``out`` (a diffusers folder) and return it; cached by a marker."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    if (out / ".complete").is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    tok_dir = out.with_name(out.name + ".tokenizer")
    write_clip_tokenizer(tok_dir)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, time_cond_proj_dim=time_cond_proj_dim)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    torch.manual_seed(seed)
    vae = AutoencoderKL(block_out_channels=[32, 64], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
                        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], latent_channels=4)
    torch.manual_seed(seed)
    vocab = json.loads((tok_dir / "vocab.json").read_text())
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=vocab[BOS], eos_token_id=vocab[EOS], pad_token_id=vocab[EOS], hidden_size=32,
        intermediate_size=37, layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=5,
        vocab_size=VOCAB_SIZE))
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    pipe = StableDiffusionPipeline(unet=unet, scheduler=scheduler, vae=vae, text_encoder=text_encoder,
                                   tokenizer=tokenizer, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    shutil.rmtree(out / "tokenizer")
    shutil.copytree(tok_dir, out / "tokenizer")  # the files a real SD-1.5 folder carries, not a converted copy
    shutil.rmtree(tok_dir)
    (out / ".complete").write_text(json.dumps({"seed": seed, "time_cond_proj_dim": time_cond_proj_dim}))
    return out
