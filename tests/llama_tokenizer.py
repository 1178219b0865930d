"""A Llama-2-style SentencePiece-BPE tokenizer built offline: ``<unk> <s> </s>`` = 0 1 2, byte fallback, dummy prefix.

Like Llama-2's ``tokenizer.json``: normalizer ``Prepend("\u2581") + Replace(" ", "\u2581")`` (the dummy prefix),
no pre-tokenizer, BPE with ``byte_fallback`` over 256 ``<0xNN>`` tokens, ``<s>`` prepended by the post-processor.
The merges are learned with whitespace splitting (as SentencePiece does), so no piece ends in ``\u2581`` and a
trailing space stays the lone ``\u2581`` token (Llama-2's 29871).
"""
from __future__ import annotations

SPECIALS = ["<unk>", "<s>", "</s>"]
BYTE_TOKENS = [f"<0x{value:02X}>" for value in range(256)]
VOCAB_SIZE = 700
TRAINING_TEXT = (
    '"{}", summarize the above passage within eight words: ',
    '"{}", predict the following passage within eight words: ',
    "{} The original sentence: ", "{} The next sentence: ",
)
WORDS = (
    "the cell protein gene cancer patient study results effect treatment disease risk increase model data "
    "method system retrieval query document search index dense vector language river mountain city music film "
    "history science paper water energy light computer program network learning neural training test time year "
    "What is llama? The llama is a domesticated South American camelid, widely used as a meat and pack animal."
).split()


def build_llama_style_tokenizer():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never", split=True)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIALS + BYTE_TOKENS,
                                  initial_alphabet=["\u2581"], show_progress=False)
    corpus = [template.format(" ".join(WORDS[start:start + 7])) for start in range(len(WORDS))
              for template in TRAINING_TEXT]
    corpus += [template.replace("{}", "").replace('"', "", 1) for template in TRAINING_TEXT] * 20  # Llama's '▁",'

    backend.train_from_iterator(corpus, trainer=trainer)
    backend.pre_tokenizer = None  # Llama-2's tokenizer.json has none: BPE runs over the normalized string
    backend.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                           special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<unk>", padding_side="left")
